// The browser side of the /notes namespace (signaling/notes.py): Yjs documents kept in sync with
// the server over the Yjs sync protocol (y-protocols messages inside socket.io events). One
// connection per page, any number of documents. Local edits are sent as they happen; each is
// "saved" once the server acknowledges it (it is then stored). After a dropped connection the
// documents are opened again and the sync handshake sends whatever did not get through.
import { io } from "/static/vendor/socket.io.esm.min.js";
import { Y, awarenessProtocol, decoding, encoding, syncProtocol } from "/static/vendor/yjs-bundle.mjs";

const MESSAGE_SYNC = 0;
const REMOTE = Symbol("remote");
export const TEXT_NAME = "text"; // notes/catalogue.py TEXT_NAME

export class NotesConnection extends EventTarget {
  /** token: the hearing link (parties, and staff inside a hearing); none: the staff session. */
  constructor(token, name = "") {
    super();
    this.name = name; // shown to the other writers of a document while this page writes it
    this.handles = new Map();
    this.unacked = 0;
    this.socket = io("/notes", {
      transports: ["websocket"],
      auth: token ? { token } : undefined,
      autoConnect: false,
    });
    this.socket.on("connect", () => {
      for (const handle of this.handles.values()) this.#open(handle);
      this.#status();
    });
    this.socket.on("disconnect", () => {
      for (const handle of this.handles.values()) {
        const others = [...handle.awareness.getStates().keys()].filter((c) => c !== handle.doc.clientID);
        awarenessProtocol.removeAwarenessStates(handle.awareness, others, REMOTE);
      }
      this.#status();
    });
    this.socket.on("connect_error", (err) => {
      this.#emit("refused", { error: err?.data || { message: String(err?.message || err) } });
    });
    this.socket.on("y", (data) => this.#receive(data));
    this.socket.on("aw", (data) => {
      const handle = this.handles.get(data?.doc);
      if (handle && data.m) {
        const known = new Set(handle.awareness.getStates().keys());
        awarenessProtocol.applyAwarenessUpdate(handle.awareness, new Uint8Array(data.m), REMOTE);
        const newcomer = [...handle.awareness.getStates().keys()].some((c) => !known.has(c));
        if (newcomer && handle.writable && handle.awareness.getLocalState()) {
          // Someone just arrived: tell them at once that we are here too.
          const m = awarenessProtocol.encodeAwarenessUpdate(handle.awareness, [handle.doc.clientID]);
          this.socket.emit("aw", { doc: handle.key, m });
        }
      }
    });
    this.socket.on("error", (error) => this.#emit("error", { error }));
    this.socket.on("frozen", (data) => {
      const handle = this.handles.get(data?.doc);
      if (handle) this.#open(handle); // the answer says: no longer writable
    });
  }

  /** Start syncing document `key`; returns {key, doc, text}; its events come on this object. */
  open(key) {
    let handle = this.handles.get(key);
    if (!handle) {
      handle = { key, writable: false, frozen: false, ready: false };
      this.#fresh(handle);
      this.handles.set(key, handle);
      if (this.socket.connected) this.#open(handle);
    }
    if (!this.socket.connected && !this.socket.active) this.socket.connect();
    return handle;
  }

  /** Re-try opening documents the server refused (e.g. a party admitted a moment ago). */
  retry() {
    for (const handle of this.handles.values()) {
      if (!handle.ready && this.socket.connected) this.#open(handle);
    }
  }

  /** Drop the local copy and fetch the server's again (after an edit the server refused: a
   *  reader's copy must not keep text nobody else has). Fires "reset" with the new handle. */
  reset(key) {
    const handle = this.handles.get(key);
    if (!handle) return;
    handle.doc.destroy();
    this.#fresh(handle);
    this.#emit("reset", { key });
    if (this.socket.connected) this.#open(handle);
  }

  #fresh(handle) {
    const doc = new Y.Doc();
    doc.on("update", (update, origin) => {
      if (origin !== REMOTE) this.#send(handle, update);
    });
    handle.doc = doc;
    handle.text = doc.getText(TEXT_NAME);
    // Presence: who else is writing this document right now (never stored).
    handle.awareness?.destroy();
    handle.awareness = new awarenessProtocol.Awareness(doc);
    handle.awareness.setLocalState(null);
    handle.awareness.on("update", ({ added, updated, removed }, origin) => {
      if (origin !== REMOTE && handle.writable && this.socket.connected) {
        const changed = added.concat(updated, removed);
        const m = awarenessProtocol.encodeAwarenessUpdate(handle.awareness, changed);
        this.socket.emit("aw", { doc: handle.key, m });
      }
      this.#emit("presence", { key: handle.key });
    });
  }

  /** Names of the others writing document `key` now. */
  writers(key) {
    const handle = this.handles.get(key);
    if (!handle) return [];
    const names = [];
    for (const [client, state] of handle.awareness.getStates()) {
      if (client !== handle.doc.clientID && state?.name) names.push(state.name);
    }
    return [...new Set(names)];
  }

  get state() {
    if (!this.socket.connected) return "offline";
    return this.unacked > 0 ? "saving" : "saved";
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #status() {
    this.#emit("status", { state: this.state });
  }

  #open(handle) {
    this.socket.emit("open", { doc: handle.key }, (ack) => {
      if (!ack?.ok) {
        handle.ready = false;
        this.#emit("refused", { key: handle.key, error: ack?.error });
        return;
      }
      handle.writable = Boolean(ack.writable);
      handle.frozen = Boolean(ack.frozen);
      handle.ready = true;
      handle.awareness.setLocalState(handle.writable && this.name ? { name: this.name } : null);
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      syncProtocol.writeSyncStep1(encoder, handle.doc);
      this.socket.emit("y", { doc: handle.key, m: encoding.toUint8Array(encoder) });
      this.#emit("open", { key: handle.key, writable: handle.writable, frozen: handle.frozen });
    });
  }

  #receive(data) {
    const handle = this.handles.get(data?.doc);
    if (!handle || !data.m) return;
    const decoder = decoding.createDecoder(new Uint8Array(data.m));
    if (decoding.readVarUint(decoder) !== MESSAGE_SYNC) return;
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, MESSAGE_SYNC);
    const kind = syncProtocol.readSyncMessage(decoder, encoder, handle.doc, REMOTE);
    if (encoding.length(encoder) > 1) {
      // Our answer to the server's step 1: what we have that it lacks (edits made offline).
      this.#sendAcked(handle, encoding.toUint8Array(encoder));
    }
    if (kind === syncProtocol.messageYjsSyncStep2) this.#emit("synced", { key: handle.key });
  }

  #send(handle, update) {
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, MESSAGE_SYNC);
    syncProtocol.writeUpdate(encoder, update);
    this.#sendAcked(handle, encoding.toUint8Array(encoder));
  }

  #sendAcked(handle, message) {
    if (!this.socket.connected) {
      this.#status(); // kept in the Y.Doc; the handshake after reconnecting sends it
      return;
    }
    this.unacked += 1;
    this.#status();
    this.socket.timeout(15000).emit("y", { doc: handle.key, m: message }, (err, ack) => {
      this.unacked = Math.max(0, this.unacked - 1);
      if (!err && ack && !ack.ok) {
        this.#emit("rejected", { key: handle.key, error: ack.error });
        if (!handle.writable) this.reset(handle.key);
      }
      this.#status();
    });
  }
}

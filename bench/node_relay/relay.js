// Reference relay for bench/signaling.py: a socket.io 4.x server whose /hearing namespace behaves
// on the wire like Yuntiao's (signaling/server.py, events in signaling/catalogue.py) for what the
// benchmark drives: connect with an invitation token, lobby and admission, a `sync` view per
// participant with their peers, `signal` relayed only between admitted, connected participants of
// the same hearing and sub-room, `chat` to the admitted participants of the sender's sub-room.
//
// What it does NOT do (and ours does): read or write a database (no audit trail, chat kept in
// memory only), check link signatures/expiry/revocation. It is the "how fast could a plain
// socket.io relay go" baseline, never something to serve users.
//
// Usage: node relay.js --port PORT --participants FILE.json
//   FILE.json: {"tokens": {token: participantId}, "hearings": [{"id", "title", "participants":
//   [{"id", "name", "kind", "side"}]}]}
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const { Server } = require("socket.io");

const NAMESPACE = "/hearing";
const STAFF_KINDS = new Set(["mediator", "clerk"]);

function arg(name, fallback) {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg("port", "8090"));
const spec = JSON.parse(fs.readFileSync(arg("participants", "participants.json"), "utf8"));

// ---- state --------------------------------------------------------------------------------------
const hearings = new Map(); // id -> {id, title, status, record, participants: Map(id -> person), chat: []}
const people = new Map(); // participant id -> person
for (const h of spec.hearings) {
    const hearing = {
        id: h.id,
        title: h.title,
        status: "scheduled",
        record: false,
        participants: new Map(),
        chat: [],
    };
    for (const p of h.participants) {
        const person = {
            id: p.id,
            name: p.name,
            kind: p.kind,
            side: p.side,
            hearing: h.id,
            state: "invited",
            subroom: "main",
            sids: new Set(),
            media: null,
        };
        hearing.participants.set(p.id, person);
        people.set(p.id, person);
    }
    hearings.set(h.id, hearing);
}
const tokens = new Map(Object.entries(spec.tokens));
let chatSeq = 0;

const isStaff = (p) => STAFF_KINDS.has(p.kind);
const admitted = (p) => p.state === "admitted";
const connected = (p) => p.sids.size > 0;
const room = (id) => `p${id}`;

// ---- routing (rooms/routing.py) -----------------------------------------------------------------
function canExchangeMedia(a, b) {
    return (
        a !== b && admitted(a) && admitted(b) && connected(a) && connected(b) && a.subroom === b.subroom
    );
}

function presenceRecipients(hearing, about) {
    const out = new Set();
    const visible = ["admitted", "left", "removed"].includes(about.state);
    for (const other of hearing.participants.values()) {
        if (other === about || !admitted(other)) continue;
        if (isStaff(other) || (visible && other.subroom === about.subroom)) out.add(other.id);
    }
    return out;
}

function person(p) {
    return {
        id: p.id,
        name: p.name,
        kind: p.kind,
        side: p.side,
        state: p.state,
        subroom: p.subroom,
        connected: connected(p),
        media: p.media,
    };
}

// ---- server -------------------------------------------------------------------------------------
const httpServer = http.createServer((req, res) => {
    if (req.url === "/healthz") {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end('{"status":"ok"}');
        return;
    }
    res.writeHead(404);
    res.end();
});
const io = new Server(httpServer, { transports: ["websocket"], serveClient: false });
const nsp = io.of(NAMESPACE);

function sync(hearing) {
    const view = {
        id: hearing.id,
        title: hearing.title,
        status: hearing.status,
        record: hearing.record,
    };
    const ids = [...hearing.participants.keys()].sort((a, b) => a - b);
    for (const id of ids) {
        const viewer = hearing.participants.get(id);
        if (!connected(viewer)) continue;
        const visible = ids.filter((o) =>
            presenceRecipients(hearing, hearing.participants.get(o)).has(id),
        );
        const message = {
            you: person(viewer),
            hearing: view,
            participants: visible.map((o) => person(hearing.participants.get(o))),
            peers: ids.filter((o) => canExchangeMedia(viewer, hearing.participants.get(o))),
            ice_servers: [],
        };
        if (isStaff(viewer) && admitted(viewer)) {
            const all = [...hearing.participants.values()];
            message.lobby = all.filter((p) => p.state === "waiting").map(person);
            message.subrooms = [...new Set(all.map((p) => p.subroom))].sort();
            message.everyone = all.map(person);
        }
        nsp.to(room(id)).emit("sync", message);
    }
}

function error(socket, event, code, message) {
    socket.emit("error", { code, message, event });
}

// Payload checks mirroring signaling/catalogue.py (extra keys refused, lengths bounded).
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const onlyKeys = (v, keys) => Object.keys(v).every((k) => keys.includes(k));
const isInt = (v) => Number.isInteger(v);

function validSignal(d) {
    if (!isObject(d) || !onlyKeys(d, ["to", "description", "candidate"]) || !isInt(d.to)) {
        return false;
    }
    if (d.description != null) {
        const x = d.description;
        if (!isObject(x) || !onlyKeys(x, ["type", "sdp"])) return false;
        if (x.type !== "offer" && x.type !== "answer") return false;
        if (typeof x.sdp !== "string" || x.sdp.length > 100000) return false;
    }
    if (d.candidate != null) {
        const c = d.candidate;
        if (!isObject(c) || !onlyKeys(c, ["candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"]))
            return false;
        if (typeof c.candidate !== "string" || c.candidate.length > 2000) return false;
        if (c.sdpMid != null && (typeof c.sdpMid !== "string" || c.sdpMid.length > 100)) return false;
        if (c.sdpMLineIndex != null && (!isInt(c.sdpMLineIndex) || c.sdpMLineIndex < 0 || c.sdpMLineIndex > 100))
            return false;
        if (c.usernameFragment != null && (typeof c.usernameFragment !== "string" || c.usernameFragment.length > 256))
            return false;
    }
    return true;
}

nsp.use((socket, next) => {
    const auth = socket.handshake.auth || {};
    const id = tokens.get(String(auth.token || ""));
    const me = id === undefined ? undefined : people.get(id);
    if (me === undefined) {
        const err = new Error("invitation_invalid");
        err.data = { code: "invitation_invalid", message: "This link is not valid." };
        next(err);
        return;
    }
    if (me.state === "denied" || me.state === "removed") {
        const err = new Error(`participant_${me.state}`);
        err.data = { code: `participant_${me.state}`, message: "Not admitted." };
        next(err);
        return;
    }
    socket.data.me = me;
    next();
});

nsp.on("connection", (socket) => {
    const me = socket.data.me;
    const hearing = hearings.get(me.hearing);
    me.state = isStaff(me) || admitted(me) ? "admitted" : "waiting";
    if (isStaff(me) && hearing.status === "scheduled") hearing.status = "open";
    // The same link opened again takes over: the older tab is told and disconnected.
    for (const old of [...me.sids]) {
        const oldSocket = nsp.sockets.get(old);
        me.sids.delete(old);
        if (oldSocket) {
            oldSocket.emit("replaced", {});
            oldSocket.disconnect(true);
        }
    }
    me.sids.add(socket.id);
    socket.join(room(me.id));
    sync(hearing);
    if (admitted(me)) {
        const history = hearing.chat.filter(
            (m) => isStaff(me) || m.from === me.id || m.subroom === me.subroom,
        );
        socket.emit("chat_history", history);
    }

    socket.on("disconnect", () => {
        if (me.sids.delete(socket.id)) {
            if (!connected(me)) me.media = null;
            sync(hearing);
        }
    });

    socket.on("signal", (data) => {
        if (!validSignal(data)) return error(socket, "signal", "invalid", "invalid payload");
        const to = hearing.participants.get(data.to);
        if (to === undefined || !canExchangeMedia(me, to)) {
            return error(socket, "signal", "not_allowed", "You are not allowed to do this in this hearing.");
        }
        const message = { from: me.id };
        if (data.description != null) message.description = data.description;
        if (data.candidate != null) message.candidate = data.candidate;
        nsp.to(room(to.id)).emit("signal", message);
    });

    socket.on("chat", (data) => {
        if (!isObject(data) || !onlyKeys(data, ["text"]) || typeof data.text !== "string") {
            return error(socket, "chat", "invalid", "invalid payload");
        }
        const text = data.text.trim();
        if (text.length < 1 || data.text.length > 2000) {
            return error(socket, "chat", "invalid", "invalid payload");
        }
        if (!admitted(me) || hearing.status !== "open") {
            return error(socket, "chat", "not_admitted", "Only participants in the hearing can send messages.");
        }
        const message = {
            id: ++chatSeq,
            from: me.id,
            name: me.name,
            text,
            at: new Date().toISOString(),
            subroom: me.subroom,
        };
        hearing.chat.push(message);
        for (const other of hearing.participants.values()) {
            if (admitted(other) && other.subroom === me.subroom) nsp.to(room(other.id)).emit("chat", message);
        }
    });

    socket.on("media_state", (data) => {
        if (!isObject(data)) return error(socket, "media_state", "invalid", "invalid payload");
        if (!admitted(me)) return error(socket, "media_state", "not_allowed", "not allowed");
        me.media = {
            audio: data.audio !== false,
            video: data.video !== false,
            screen: data.screen === true,
            hand: data.hand === true,
        };
        for (const id of presenceRecipients(hearing, me)) {
            nsp.to(room(id)).emit("media_state", { id: me.id, media: me.media });
        }
    });

    function staffAction(event, data, states, target) {
        if (!isObject(data) || !isInt(data.participant_id)) {
            return error(socket, event, "invalid", "invalid payload");
        }
        const who = hearing.participants.get(data.participant_id);
        if (!isStaff(me) || !admitted(me) || who === undefined) {
            return error(socket, event, "not_allowed", "You are not allowed to do this in this hearing.");
        }
        if (!states.includes(who.state)) {
            return error(socket, event, "not_admissible", `${who.name} cannot be admitted now (${who.state}).`);
        }
        who.state = target;
        sync(hearing);
        if (target === "denied" || target === "removed") {
            nsp.to(room(who.id)).emit("removed", {});
            for (const sid of [...who.sids]) nsp.sockets.get(sid)?.disconnect(true);
        }
    }

    socket.on("admit", (data) => staffAction("admit", data, ["waiting"], "admitted"));
    socket.on("deny", (data) => staffAction("deny", data, ["waiting"], "denied"));
    socket.on("remove", (data) =>
        staffAction("remove", data, ["invited", "waiting", "admitted", "left"], "removed"),
    );

    socket.on("leave", () => {
        if (me.state === "waiting" || me.state === "admitted") me.state = "left";
        sync(hearing);
        me.sids.delete(socket.id);
        socket.disconnect(true);
    });
});

httpServer.listen(port, "127.0.0.1", () => {
    console.log(`relay listening on http://127.0.0.1:${port}${NAMESPACE}`);
});

// The hearing room. Everything on screen is rendered from the server's latest "sync" (who is
// here, who is waiting, who I hold a media connection with); events in between only refine it.
// Wire protocol: signaling/catalogue.py. User text is always set with textContent.
import { io } from "/static/vendor/socket.io.esm.min.js";
import { Mesh } from "./hearing-peers.js";
import {
  levelMeter,
  loadPrefs,
  makeT,
  readTexts,
  startLocalMedia,
  stopStream,
  takeHandedOver,
} from "./hearing-media.js";
import { attachEvidenceViewer } from "./evidence-viewer.js";

const root = document.getElementById("hearing-room");
const t = makeT(readTexts(root));
const token = root.dataset.token;
const $ = (id) => document.getElementById(id);

const ui = {
  status: $("room-status"),
  banner: $("room-banner"),
  notices: $("notices"),
  waiting: $("waiting-screen"),
  waitingPreview: $("waiting-preview"),
  stage: $("stage"),
  tiles: $("tiles"),
  controls: $("controls"),
  end: $("end-screen"),
  endMessage: $("end-message"),
  endReload: $("end-reload"),
  chatPanel: $("chat-panel"),
  chatLog: $("chat-log"),
  chatForm: $("chat-form"),
  chatInput: $("chat-input"),
  chatScope: $("chat-scope"),
  chatUnread: $("chat-unread"),
  staffPanel: $("staff-panel"),
  lobbyList: $("lobby-list"),
  lobbyCount: $("lobby-count"),
  peopleList: $("people-list"),
  moveRoom: $("move-room"),
  soundButton: $("sound-button"),
  buttons: {
    mic: $("btn-mic"),
    cam: $("btn-cam"),
    screen: $("btn-screen"),
    hand: $("btn-hand"),
    chat: $("btn-chat"),
    staff: $("btn-staff"),
    leave: $("btn-leave"),
  },
};

// Local media and what the room does with it.
const state = {
  sync: null,
  admitted: false,
  finished: false,
  needMediaState: true,
  stream: new MediaStream(),
  mic: null,
  camera: null,
  screen: null,
  micOn: false,
  camOn: false,
  hand: false,
  level: 0,
  lastSentLevel: -1,
  heldLevel: 0, // set through window.yuntiao.reportLevel (tests, support)
  levels: new Map(), // id → {level, at}: for the active-speaker highlight
  reported: new Map(), // id → {rtt_ms, loss}: what each participant says of their connection
  measured: new Map(), // id → {rttMs, loss}: my connection to each peer
  lastQualitySent: 0,
  profile: null,
  chatIds: new Set(),
  unread: 0,
  lobbyNotices: new Map(), // waiting participant id → their note
  hands: new Map(),
  timers: [],
  stopMeter: () => {},
};

const socket = io("/hearing", { transports: ["websocket"], auth: { token }, autoConnect: false });
attachEvidenceViewer(socket);

const mesh = new Mesh({
  send: (payload) => {
    mark(payload.description ? `sent_${payload.description.type}` : "sent_candidate");
    socket.emit("signal", payload);
  },
  onTrack: (id) => {
    mark("track");
    attachRemote(id);
  },
  onChange: (id) => {
    const pc = mesh.pcs.get(id);
    if (pc) mark(`pc_${pc.connectionState}`);
    scheduleRender();
  },
});

// Test and support hook: the live peer connections and the last view from the server.
window.yuntiao = {
  peers: mesh.pcs,
  levels: state.levels, // id → {level, at}: the active-speaker inputs
  // Report a speaking level as if measured, until another is reported (tests: fake microphones'
  // beeps are too faint and irregular to rely on). It goes out through the same 500 ms report
  // as a measured one: sent on its own, the next measurement could replace it on the other
  // pages before they showed it.
  reportLevel: (level) => {
    state.heldLevel = level;
  },
  state: null,
  firstRemoteFrameMs: null,
  socketConnectedMs: null,
  mediaReadyMs: null,
  marks: {}, // first time (ms since navigation) each step of joining happened
  trace: [], // [wall-clock ms, step] of the last steps, for support and tests
};

function mark(name) {
  window.yuntiao.marks[name] ??= Math.round(performance.now());
  const trace = window.yuntiao.trace;
  trace.push([Date.now(), name]);
  if (trace.length > 300) trace.shift();
}
mark("script");

// ---- helpers ------------------------------------------------------------------------------------

const KINDS = new Set(["mediator", "clerk", "party", "agent", "observer"]);
const SIDES = new Set(["applicant", "respondent"]);

function roleText(person) {
  const kind = KINDS.has(person.kind) ? t(`kind_${person.kind}`) : person.kind;
  if (person.kind === "mediator" || person.kind === "clerk" || !SIDES.has(person.side)) return kind;
  return `${kind} · ${t(`side_${person.side}`)}`;
}

function roomName(room) {
  if (room === "main" || room === "applicant" || room === "respondent") return t(`room_${room}`);
  return room;
}

function isStaff() {
  const you = state.sync?.you;
  return Boolean(you && (you.kind === "mediator" || you.kind === "clerk"));
}

function myId() {
  return state.sync?.you?.id ?? null;
}

function notice(text, kind = "info", ms = 8000) {
  const box = document.createElement("div");
  box.className = `alert ${kind === "error" ? "" : "alert-success"} room-notice`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  const p = document.createElement("p");
  p.textContent = text;
  box.append(p);
  ui.notices.append(box);
  while (ui.notices.children.length > 4) ui.notices.firstElementChild.remove();
  if (ms) setTimeout(() => box.remove(), ms);
  return box;
}

function setStatus(text, problem = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("room-status-problem", problem);
}

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString(document.documentElement.lang || undefined, { hour: "2-digit", minute: "2-digit" });
}

// ---- local media --------------------------------------------------------------------------------

const PROFILES = [
  // [largest number of peers, constraints, video bitrate cap per peer]
  [2, { width: 640, height: 480, frameRate: 24 }, 800_000],
  [5, { width: 320, height: 240, frameRate: 15 }, 250_000],
  [Infinity, { width: 320, height: 240, frameRate: 12 }, 150_000],
];

// Runs while the socket connects (a connection made before the media is ready sends nothing
// until replaceTrack puts the tracks in: the transceivers are negotiated send-and-receive).
async function startMedia() {
  const prefs = loadPrefs();
  const result = takeHandedOver() ?? (await startLocalMedia(prefs, PROFILES[0][1]));
  if (state.finished) {
    stopStream(result.stream);
    return;
  }
  state.stream = result.stream;
  state.mic = state.stream.getAudioTracks()[0] ?? null;
  state.camera = state.stream.getVideoTracks()[0] ?? null;
  state.micOn = Boolean(state.mic);
  state.camOn = Boolean(state.camera);
  mark("media");
  await Promise.all([mesh.replaceTrack("audio", state.mic), mesh.replaceTrack("video", state.screen || state.camera)]);
  if (!state.mic && !state.camera) notice(t("no_media"), "error", 0);
  else if (!state.camera) notice(t("audio_only"), "info", 12000);
  state.stopMeter = levelMeter(state.stream, (level) => {
    // Keep the loudest moment since the last report: speech comes in bursts shorter than
    // the reporting interval.
    state.level = Math.max(state.level, state.micOn ? level : 0);
  });
  ui.waitingPreview.srcObject = state.camera ? state.stream : null;
  window.yuntiao.mediaReadyMs = performance.now();
  // The room size may already be known: size the camera for it.
  state.profile = null;
  adaptToRoomSize(mesh.wanted.size);
  sendMediaState();
}

// Fewer pixels and bits per peer as the room grows: each browser sends to every other one.
function adaptToRoomSize(peerCount) {
  const [, size, bitrate] = PROFILES.find(([limit]) => peerCount <= limit);
  if (state.profile === size) return;
  state.profile = size;
  state.camera
    ?.applyConstraints({
      width: { ideal: size.width },
      height: { ideal: size.height },
      frameRate: { ideal: size.frameRate, max: size.frameRate },
    })
    .catch(() => {});
  mesh.setMaxBitrate(bitrate);
}

function mediaState() {
  return { audio: state.micOn, video: state.camOn && Boolean(state.camera), screen: Boolean(state.screen), hand: state.hand };
}

function sendMediaState() {
  if (state.admitted && socket.connected) socket.emit("media_state", mediaState());
  renderControls();
  scheduleRender();
}

function setMic(on) {
  state.micOn = Boolean(on && state.mic);
  if (state.mic) state.mic.enabled = state.micOn;
  sendMediaState();
}

function setCamera(on) {
  state.camOn = Boolean(on && state.camera);
  if (state.camera) state.camera.enabled = state.camOn;
  sendMediaState();
}

async function startShare() {
  if (!navigator.mediaDevices?.getDisplayMedia) {
    notice(t("screen_unsupported"), "error");
    return;
  }
  try {
    const display = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 10 }, audio: false });
    const track = display.getVideoTracks()[0];
    if (!track) return;
    track.contentHint = "detail";
    track.addEventListener("ended", () => stopShare());
    state.screen = track;
    await mesh.replaceTrack("video", track);
    sendMediaState();
  } catch (error) {
    if (error?.name !== "NotAllowedError") notice(t("screen_failed"), "error");
  }
}

async function stopShare() {
  const track = state.screen;
  if (!track) return;
  state.screen = null;
  track.stop();
  await mesh.replaceTrack("video", state.camera);
  sendMediaState();
}

// ---- rendering ----------------------------------------------------------------------------------

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function makeTile(id) {
  const tile = document.createElement("article");
  tile.className = "tile";
  tile.dataset.id = String(id);
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // sound plays through the <audio> element (autoplay rules differ)
  video.addEventListener("loadeddata", () => {
    tile.classList.add("has-video");
    if (id !== myId()) mark("remote_frame");
    if (id !== myId() && window.yuntiao.firstRemoteFrameMs === null) {
      window.yuntiao.firstRemoteFrameMs = performance.now();
    }
  });
  const avatar = document.createElement("div");
  avatar.className = "tile-avatar";
  avatar.setAttribute("aria-hidden", "true");
  const audio = document.createElement("audio");
  audio.autoplay = true;
  const meta = document.createElement("div");
  meta.className = "tile-meta";
  const name = document.createElement("span");
  name.className = "tile-name";
  const role = document.createElement("span");
  role.className = "tile-role";
  meta.append(name, role);
  const badges = document.createElement("div");
  badges.className = "tile-badges";
  const quality = document.createElement("span");
  quality.className = "tile-quality";
  quality.setAttribute("role", "img");
  for (let i = 0; i < 3; i += 1) quality.append(document.createElement("i"));
  tile.append(video, avatar, audio, meta, badges, quality);
  return tile;
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = `tile-badge tile-badge-${kind}`;
  span.textContent = text;
  return span;
}

function attachRemote(id) {
  const tile = ui.tiles.querySelector(`.tile[data-id="${id}"]`);
  const stream = mesh.remoteStream(id);
  if (!tile || !stream) return;
  const video = tile.querySelector("video");
  const audio = tile.querySelector("audio");
  if (video.srcObject !== stream) {
    tile.classList.remove("has-video");
    video.srcObject = stream;
  }
  if (audio.srcObject !== stream) {
    audio.srcObject = stream;
    audio.play().catch(() => {
      ui.soundButton.hidden = false;
    });
  }
}

function qualityLevel(id) {
  const measured = state.measured.get(id);
  const reported = state.reported.get(id);
  const rtt = Math.max(measured?.rttMs ?? -1, reported?.rtt_ms ?? -1);
  const loss = Math.max(measured?.loss ?? -1, reported?.loss ?? -1);
  if (rtt < 0 && loss < 0) return "unknown";
  if (rtt > 400 || loss > 0.08) return "poor";
  if (rtt > 150 || loss > 0.02) return "fair";
  return "good";
}

function updateTile(tile, person, self) {
  const media = self ? mediaState() : person.media || {};
  tile.querySelector(".tile-name").textContent = self ? `${person.name}（${t("you")}）` : person.name;
  tile.querySelector(".tile-role").textContent = roleText(person);
  tile.querySelector(".tile-avatar").textContent = Array.from(person.name || "?")[0] || "?";
  const reconnecting = !self && person.state === "admitted" && !person.connected;
  const left = !self && person.state !== "admitted";
  tile.classList.toggle("tile-self", self);
  tile.classList.toggle("tile-away", reconnecting || left);
  tile.classList.toggle("camera-off", media.video === false && !media.screen);
  tile.classList.toggle("sharing", Boolean(media.screen));
  const badges = [];
  if (reconnecting) badges.push(badge(t("state_reconnecting"), "state"));
  if (left) badges.push(badge(t(`state_${person.state}`), "state"));
  if (media.hand) badges.push(badge(t("hand"), "hand"));
  if (media.audio === false) badges.push(badge(t("muted"), "muted"));
  if (media.screen) badges.push(badge(t("sharing"), "screen"));
  tile.querySelector(".tile-badges").replaceChildren(...badges);
  const level = self ? "unknown" : qualityLevel(person.id);
  const quality = tile.querySelector(".tile-quality");
  quality.dataset.level = self || left || reconnecting ? "none" : level;
  quality.setAttribute("aria-label", t(`quality_${level}`));
  quality.title = t(`quality_${level}`);
  if (self) {
    const video = tile.querySelector("video");
    const local = state.screen ? new MediaStream([state.screen]) : state.camera ? state.stream : null;
    const wanted = local ? local.getVideoTracks()[0] : null;
    const current = video.srcObject ? video.srcObject.getVideoTracks()[0] : null;
    if (wanted !== current) {
      tile.classList.remove("has-video");
      video.srcObject = local;
    }
    tile.classList.toggle("mirrored", !state.screen);
  } else if (left || reconnecting) {
    const video = tile.querySelector("video");
    video.srcObject = null;
    tile.querySelector("audio").srcObject = null;
    tile.classList.remove("has-video");
  } else {
    attachRemote(person.id);
  }
}

function render(withStaff = false) {
  const view = state.sync;
  if (!view || state.finished) return;
  const you = view.you;
  const waiting = you.state !== "admitted";
  ui.waiting.hidden = !waiting;
  ui.stage.hidden = waiting;
  ui.controls.hidden = false;
  root.classList.toggle("is-waiting", waiting);
  root.classList.toggle("is-staff", isStaff());

  // Tiles: me and everyone of my room who is in (or was in) the hearing.
  const people = [you];
  for (const person of view.participants || []) {
    if (person.id === you.id || person.subroom !== you.subroom) continue;
    if (person.state === "admitted" || person.state === "left") people.push(person);
  }
  const keep = new Set();
  for (const person of people) {
    keep.add(String(person.id));
    let tile = ui.tiles.querySelector(`.tile[data-id="${person.id}"]`);
    if (!tile) {
      tile = makeTile(person.id);
      ui.tiles.append(tile);
    }
    updateTile(tile, person, person.id === you.id);
  }
  for (const tile of [...ui.tiles.children]) {
    if (!keep.has(tile.dataset.id)) tile.remove();
  }
  ui.tiles.dataset.count = String(people.length);

  // Caucus: say so, and which room I am in.
  const rooms = new Set((view.everyone || view.participants || []).filter((p) => p.state === "admitted").map((p) => p.subroom));
  rooms.add(you.subroom);
  const caucus = rooms.size > 1 || you.subroom !== "main";
  ui.banner.hidden = waiting || !caucus;
  ui.banner.textContent = caucus ? `${t("caucus_on")} ${t("room_label", { room: roomName(you.subroom) })}` : "";
  ui.chatScope.textContent = caucus ? t("chat_caucus") : "";

  renderControls();
  // The staff lists are rebuilt only when the server says something changed, so a button is
  // not replaced under the mediator's finger by a routine repaint.
  if (withStaff && isStaff()) renderStaff(view);
}

function renderControls() {
  const b = ui.buttons;
  const set = (button, pressed, label) => {
    button.setAttribute("aria-pressed", String(pressed));
    button.querySelector(".control-label").textContent = label;
  };
  set(b.mic, !state.micOn, state.micOn ? t("mic_on") : t("mic_off"));
  b.mic.disabled = !state.mic;
  set(b.cam, !state.camOn, state.camOn ? t("cam_on") : t("cam_off"));
  b.cam.disabled = !state.camera;
  set(b.screen, Boolean(state.screen), state.screen ? t("share_stop") : t("share_start"));
  b.screen.hidden = !navigator.mediaDevices?.getDisplayMedia;
  set(b.hand, state.hand, state.hand ? t("hand_down") : t("hand_up"));
  ui.chatUnread.textContent = state.unread ? String(state.unread) : "";
  ui.chatUnread.hidden = !state.unread;
  if (b.staff) b.staff.hidden = !isStaff();
}

function actionButton(text, action, id, extra = "") {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `button button-small ${extra}`;
  button.textContent = text;
  button.dataset.action = action;
  button.dataset.id = String(id);
  return button;
}

function personLine(person) {
  const li = document.createElement("li");
  li.className = "person";
  li.dataset.id = String(person.id);
  const who = document.createElement("div");
  who.className = "person-who";
  const name = document.createElement("strong");
  name.textContent = person.name;
  const detail = document.createElement("span");
  detail.className = "muted";
  let stateText = t(`state_${person.state}`);
  if (person.state === "admitted" && !person.connected) stateText = t("state_reconnecting");
  const parts = [roleText(person), stateText];
  if (person.state === "admitted") parts.push(t("in_room", { room: roomName(person.subroom) }));
  detail.textContent = parts.join(" · ");
  who.append(name, detail);
  const actions = document.createElement("div");
  actions.className = "person-actions";
  li.append(who, actions);
  return [li, actions];
}

function renderStaff(view) {
  const me = view.you.id;
  const lobby = view.lobby || [];
  ui.lobbyCount.textContent = String(lobby.length);
  const lobbyItems = lobby.map((person) => {
    const [li, actions] = personLine(person);
    actions.append(actionButton(t("admit"), "admit", person.id, "button-primary"), actionButton(t("deny"), "deny", person.id, "button-caution"));
    return li;
  });
  if (lobbyItems.length === 0) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = t("lobby_empty");
    lobbyItems.push(li);
  }
  ui.lobbyList.replaceChildren(...lobbyItems);
  // A note when someone arrives in the lobby; it goes away once they are dealt with.
  const waitingNow = new Map();
  for (const person of lobby) {
    const box = state.lobbyNotices.get(person.id);
    waitingNow.set(person.id, box?.isConnected ? box : notice(t("someone_waiting", { name: person.name }), "info", 0));
  }
  for (const [id, box] of state.lobbyNotices) if (!waitingNow.has(id)) box.remove();
  state.lobbyNotices = waitingNow;

  const recording = Boolean(view.hearing?.recording);
  if ($("recording-start")) {
    const missing = view.not_recorded || [];
    $("recording-start").hidden = recording;
    $("recording-start").disabled = missing.length > 0;
    $("recording-stop").hidden = !recording;
    $("recording-consent").textContent = recording
      ? t("recording_running")
      : missing.length
        ? t("recording_missing", { names: missing.join("、") })
        : t("recording_ready");
  }
  const rooms = new Set(["main", ...(view.subrooms || [])]);
  const caucus = rooms.size > 1;
  const everyone = (view.everyone || view.participants || []).filter((p) => p.id !== me && p.state !== "waiting");
  ui.peopleList.replaceChildren(
    ...everyone.map((person) => {
      const [li, actions] = personLine(person);
      if (person.state === "admitted" && person.connected) actions.append(actionButton(t("mute_other"), "mute", person.id));
      if (person.kind !== "mediator" && ["admitted", "invited", "left"].includes(person.state)) {
        actions.append(actionButton(t("remove"), "remove", person.id, "button-caution"));
      }
      if (person.state === "denied" || person.state === "removed") actions.append(actionButton(t("readmit"), "readmit", person.id));
      // During a caucus the mediator can put anyone in another sub-room (a wrong side, an
      // agent who should sit with their party).
      if (caucus && person.state === "admitted") {
        for (const room of rooms) {
          if (room === person.subroom) continue;
          const button = actionButton(t("move_to", { room: roomName(room) }), "move", person.id);
          button.dataset.subroom = room;
          actions.append(button);
        }
      }
      return li;
    }),
  );

  for (const id of ["caucus-end", "move-go"]) $(id).disabled = !caucus;
  ui.moveRoom.disabled = !caucus;
  const current = ui.moveRoom.value || view.you.subroom;
  ui.moveRoom.replaceChildren(
    ...[...rooms].map((room) => {
      const option = document.createElement("option");
      option.value = room;
      option.textContent = roomName(room);
      option.selected = room === current;
      return option;
    }),
  );
}

// ---- chat ---------------------------------------------------------------------------------------

function chatItem(message) {
  const li = document.createElement("li");
  li.className = "chat-item";
  li.classList.toggle("chat-mine", message.from === myId());
  const head = document.createElement("p");
  head.className = "chat-head";
  const name = document.createElement("strong");
  name.textContent = message.name;
  const time = document.createElement("time");
  time.dateTime = message.at;
  time.textContent = formatTime(message.at);
  head.append(name, " ", time);
  if (message.subroom && message.subroom !== "main") {
    const room = document.createElement("span");
    room.className = "chat-room";
    room.textContent = roomName(message.subroom);
    head.append(" ", room);
  }
  const text = document.createElement("p");
  text.className = "chat-text";
  text.textContent = message.text;
  li.append(head, text);
  return li;
}

function addChat(message, live) {
  if (!message || state.chatIds.has(message.id)) return;
  state.chatIds.add(message.id);
  ui.chatLog.querySelector(".chat-empty")?.remove();
  ui.chatLog.append(chatItem(message));
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
  if (live && ui.chatPanel.hidden && message.from !== myId()) {
    state.unread += 1;
    renderControls();
  }
}

function chatEmpty() {
  const li = document.createElement("li");
  li.className = "chat-empty muted";
  li.textContent = t("chat_empty");
  ui.chatLog.replaceChildren(li);
  state.chatIds.clear();
}

// ---- the end of this page's part in the hearing -------------------------------------------------

function finish(message, { reload = false } = {}) {
  if (state.finished) return;
  state.finished = true;
  for (const timer of state.timers) clearInterval(timer);
  mesh.closeAll();
  state.stopMeter();
  state.screen?.stop();
  stopStream(state.stream);
  socket.disconnect();
  ui.waiting.hidden = true;
  ui.stage.hidden = true;
  ui.controls.hidden = true;
  ui.chatPanel.hidden = true;
  if (ui.staffPanel) ui.staffPanel.hidden = true;
  ui.banner.hidden = true;
  ui.end.hidden = false;
  ui.endMessage.textContent = message;
  ui.endReload.hidden = !reload;
  setStatus("");
  ui.end.focus();
}

// ---- socket events ------------------------------------------------------------------------------

function onSync(view) {
  if (state.finished || !view?.you) return;
  mark("sync");
  if (view.peers?.length) mark("sync_with_peers");
  state.sync = view;
  window.yuntiao.state = view;
  const you = view.you;
  if (view.hearing?.status === "ended") return finish(t("ended"));
  if (you.state === "denied") return finish(t("denied"));
  if (you.state === "removed") return finish(t("removed"));
  const admitted = you.state === "admitted";
  if (admitted) mark("admitted");
  if (admitted && (!state.admitted || state.needMediaState)) {
    state.admitted = true;
    state.needMediaState = false;
    socket.emit("media_state", mediaState());
  }
  state.admitted = admitted;
  const peers = admitted ? (view.peers || []).filter((id) => typeof id === "number") : [];
  // The recorder (a peer nobody sees listed) does not make the room bigger for the camera.
  const listed = new Set((view.participants || []).map((p) => p.id));
  adaptToRoomSize(peers.filter((id) => listed.has(id)).length);
  $("recording-indicator").hidden = !view.hearing?.recording;
  mesh.update(you.id, peers, view.ice_servers);
  render(true);
}

function onMediaState({ id, media }) {
  const view = state.sync;
  if (!view) return;
  for (const list of [view.participants, view.everyone]) {
    const person = (list || []).find((p) => p.id === id);
    if (person) {
      if (isStaff() && media?.hand && !person.media?.hand) notice(t("hand_raised_by", { name: person.name }));
      person.media = media;
    }
  }
  render(true);
}

socket.on("connect", () => {
  state.needMediaState = true;
  window.yuntiao.socketConnectedMs ??= performance.now();
  setStatus(t("connected"));
});
socket.on("disconnect", (reason) => {
  if (state.finished) return;
  setStatus(t("reconnecting_self"), true);
  // The others drop their connections to someone the server no longer sees; drop ours too, so
  // the sync after reconnecting builds every connection afresh on both sides.
  mesh.closeAll();
  // The server closed us without saying why (e.g. it restarted): try again ourselves, since
  // socket.io only reconnects by itself after a network loss.
  if (reason === "io server disconnect") setTimeout(() => state.finished || socket.connect(), 1000);
  scheduleRender();
});
socket.on("connect_error", (error) => {
  if (state.finished) return;
  if (socket.active) {
    setStatus(t("reconnecting_self"), true);
    return;
  }
  // Refused by the server (denied, removed, ended, bad link): that is final for this page.
  finish(error?.data?.message || error?.message || t("denied"));
});
socket.on("sync", onSync);
socket.on("signal", (message) => {
  mark(message.description ? `signal_${message.description.type}` : "signal_candidate");
  mesh.handleSignal(message);
});
socket.on("chat", (message) => addChat(message, true));
socket.on("chat_history", (messages) => {
  const list = Array.isArray(messages) ? messages : messages?.messages || [];
  for (const message of list) addChat(message, false);
});
socket.on("media_state", onMediaState);
socket.on("speaking", ({ id, level }) => state.levels.set(id, { level, at: performance.now() }));
socket.on("quality", ({ id, rtt_ms: rtt, loss }) => {
  state.reported.set(id, { rtt_ms: rtt, loss });
  scheduleRender();
});
socket.on("mute_request", () => {
  setMic(false);
  notice(t("mute_request"), "info", 12000);
});
socket.on("replaced", () => finish(t("replaced"), { reload: true }));
socket.on("removed", () => {
  const before = state.sync?.you?.state;
  finish(before === "waiting" || before === "denied" ? t("denied") : t("removed"));
});
socket.on("hearing_ended", () => finish(t("ended")));
socket.on("error", (error) => {
  if (error?.message) notice(t("error", { message: error.message }), "error");
});

// ---- controls -----------------------------------------------------------------------------------

ui.buttons.mic.addEventListener("click", () => setMic(!state.micOn));
ui.buttons.cam.addEventListener("click", () => setCamera(!state.camOn));
ui.buttons.screen.addEventListener("click", () => (state.screen ? stopShare() : startShare()));
ui.buttons.hand.addEventListener("click", () => {
  state.hand = !state.hand;
  sendMediaState();
});
ui.buttons.chat.addEventListener("click", () => {
  const open = ui.chatPanel.hidden;
  ui.chatPanel.hidden = !open;
  ui.buttons.chat.setAttribute("aria-expanded", String(open));
  if (open) {
    if (ui.staffPanel) ui.staffPanel.hidden = true;
    state.unread = 0;
    renderControls();
    ui.chatInput.focus();
  }
});
ui.buttons.staff?.addEventListener("click", () => {
  const open = ui.staffPanel.hidden;
  ui.staffPanel.hidden = !open;
  ui.buttons.staff.setAttribute("aria-expanded", String(open));
  if (open) ui.chatPanel.hidden = true;
});
for (const close of document.querySelectorAll("[data-close-panel]")) {
  close.addEventListener("click", () => {
    const panel = document.getElementById(close.dataset.closePanel);
    panel.hidden = true;
  });
}
ui.buttons.leave.addEventListener("click", () => {
  if (!window.confirm(t("leave_confirm"))) return;
  if (socket.connected) socket.emit("leave", {});
  // Give the "leave" a moment to go out before the socket closes.
  setTimeout(() => finish(t("left"), { reload: true }), 300);
});
ui.endReload.addEventListener("click", () => location.reload());
ui.soundButton.addEventListener("click", () => {
  for (const audio of ui.tiles.querySelectorAll("audio")) audio.play().catch(() => {});
  ui.soundButton.hidden = true;
});

ui.chatForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.chatInput.value.trim();
  if (!text) return;
  socket.emit("chat", { text: text.slice(0, 2000) });
  ui.chatInput.value = "";
});
ui.chatInput.addEventListener("keydown", (event) => {
  // Enter sends, Shift+Enter starts a new line (phones show their own send key).
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.chatForm.requestSubmit();
  }
});

if (ui.staffPanel) {
  ui.staffPanel.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const id = Number(button.dataset.id);
    if (action === "remove") {
      const person = (state.sync?.everyone || state.sync?.participants || []).find((p) => p.id === id);
      if (!window.confirm(t("remove_confirm", { name: person?.name ?? "" }))) return;
    }
    if (["admit", "deny", "remove", "readmit", "mute"].includes(action)) {
      socket.emit(action, { participant_id: id });
    }
    if (action === "move") socket.emit("move", { participant_id: id, subroom: button.dataset.subroom });
  });
  $("caucus-split").addEventListener("click", () => socket.emit("caucus_start", {}));
  $("caucus-end").addEventListener("click", () => socket.emit("caucus_end", {}));
  $("move-go").addEventListener("click", () => {
    const you = state.sync?.you;
    if (you) socket.emit("move", { participant_id: you.id, subroom: ui.moveRoom.value });
  });
  $("recording-start")?.addEventListener("click", () => socket.emit("recording_start", {}));
  $("recording-stop")?.addEventListener("click", () => socket.emit("recording_stop", {}));
  $("end-hearing").addEventListener("click", () => {
    if (window.confirm(t("end_confirm"))) socket.emit("end_hearing", {});
  });
}

// ---- periodic work: active speaker, connection quality ------------------------------------------

function every(ms, fn) {
  state.timers.push(setInterval(fn, ms));
}

every(500, () => {
  const id = myId();
  if (id === null) return;
  const level = Math.round(Math.max(state.level, state.heldLevel) * 10) / 10;
  state.level = 0;
  state.levels.set(id, { level, at: performance.now() });
  if (state.admitted && socket.connected && level !== state.lastSentLevel) {
    state.lastSentLevel = level;
    socket.emit("speaking", { level });
  }
});

every(300, () => {
  const now = performance.now();
  const me = myId();
  let loudest = null;
  let best = 0.15;
  for (const [id, { level, at }] of state.levels) {
    // Others report only changes (a steady voice sends nothing new), so their last level
    // holds for a while; a page that went away stops counting after 10 s.
    if (id !== me && now - at < 10000 && level > best) {
      best = level;
      loudest = id;
    }
  }
  // My own tile lights up only when I am clearly the loudest: when everyone makes the same
  // noise (a room echoing, a test's fake microphones) the highlight shows someone else.
  const mine = state.levels.get(me);
  if (mine && mine.level > best + 0.1) loudest = me;
  for (const tile of ui.tiles.children) {
    tile.classList.toggle("speaking", loudest !== null && tile.dataset.id === String(loudest));
  }
});

every(3000, async () => {
  const rtts = [];
  const losses = [];
  for (const id of [...mesh.pcs.keys()]) {
    const q = await mesh.quality(id).catch(() => null);
    if (!q) continue;
    state.measured.set(id, q);
    if (q.rttMs !== null) rtts.push(q.rttMs);
    if (q.loss !== null) losses.push(q.loss);
  }
  for (const id of [...state.measured.keys()]) if (!mesh.pcs.has(id)) state.measured.delete(id);
  scheduleRender();
  const now = performance.now();
  if (state.admitted && socket.connected && (rtts.length || losses.length) && now - state.lastQualitySent > 9000) {
    state.lastQualitySent = now;
    const payload = {};
    if (rtts.length) payload.rtt_ms = Math.min(60000, rtts.reduce((a, b) => a + b, 0) / rtts.length);
    if (losses.length) payload.loss = Math.min(1, Math.max(...losses));
    socket.emit("quality", payload);
  }
});

// ---- start --------------------------------------------------------------------------------------

chatEmpty();
setStatus(t("connecting"));
renderControls();
socket.connect();
startMedia();

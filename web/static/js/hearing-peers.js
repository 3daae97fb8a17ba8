// The WebRTC mesh of the hearing room: one RTCPeerConnection per participant listed in
// sync.peers (the server decides who may exchange media: same sub-room, both admitted and
// connected). The participant with the smaller id sends the offer. Every offer starts a fresh
// connection (no renegotiation): screen sharing and camera changes use replaceTrack, and a
// connection that failed is replaced by a new one, because recovering needs a new
// RTCPeerConnection anyway (aiortc has no ICE restart).

const RETRY_AFTER_FAILURE_MS = 1500;
// A connection that is not up by then is started again (with wrong TURN credentials, for
// one, no "failed" ever comes).
const CONNECT_TIMEOUT_MS = 15000;

export class Mesh {
  // send(payload): emit a "signal" event; onTrack(id, stream): a remote track arrived;
  // onChange(id): a connection appeared, changed state or went away.
  constructor({ send, onTrack, onChange }) {
    this.send = send;
    this.onTrack = onTrack;
    this.onChange = onChange;
    this.myId = null;
    this.pcs = new Map(); // participant id → RTCPeerConnection (the test hook reads this)
    this.extra = new Map(); // participant id → {queue, stream}
    this.wanted = new Set();
    this.iceServers = [];
    this.tracks = { audio: null, video: null };
    this.maxBitrate = null;
  }

  // Called with each sync: close what is no longer allowed, (re)build what is missing or broken.
  update(myId, peerIds, iceServers) {
    this.myId = myId;
    this.iceServers = Array.isArray(iceServers) ? iceServers : [];
    this.wanted = new Set(peerIds);
    for (const id of [...this.pcs.keys()]) {
      if (!this.wanted.has(id)) this.close(id);
    }
    for (const id of this.wanted) {
      const pc = this.pcs.get(id);
      const broken = pc && (pc.connectionState === "failed" || pc.connectionState === "closed");
      if (broken) this.close(id);
      // The larger id waits for the offer (a new offer also replaces a broken connection).
      if ((!pc || broken) && this.myId < id) this.offer(id);
    }
  }

  close(id) {
    const pc = this.pcs.get(id);
    if (!pc) return;
    this.pcs.delete(id);
    this.extra.delete(id);
    pc.onicecandidate = null;
    pc.ontrack = null;
    pc.onconnectionstatechange = null;
    pc.close();
    this.onChange(id);
  }

  closeAll() {
    for (const id of [...this.pcs.keys()]) this.close(id);
    this.wanted = new Set();
  }

  create(id) {
    this.close(id);
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    const extra = { queue: [], stream: new MediaStream() };
    this.pcs.set(id, pc);
    this.extra.set(id, extra);
    pc.onicecandidate = (event) => {
      if (event.candidate && event.candidate.candidate) {
        this.send({ to: id, candidate: event.candidate.toJSON() });
      }
    };
    pc.ontrack = (event) => {
      for (const old of extra.stream.getTracks().filter((t) => t.kind === event.track.kind)) {
        extra.stream.removeTrack(old);
      }
      extra.stream.addTrack(event.track);
      this.onTrack(id, extra.stream);
    };
    pc.onconnectionstatechange = () => {
      this.onChange(id);
      if (pc.connectionState === "failed" && this.myId < id) {
        // Only the offerer rebuilds; the other side replaces its connection on the new offer.
        setTimeout(() => {
          if (this.pcs.get(id) === pc && this.wanted.has(id)) this.offer(id);
        }, RETRY_AFTER_FAILURE_MS);
      }
    };
    setTimeout(() => {
      if (this.pcs.get(id) === pc && pc.connectionState !== "connected" && this.wanted.has(id) && this.myId < id) {
        this.offer(id);
      }
    }, CONNECT_TIMEOUT_MS);
    this.onChange(id);
    return pc;
  }

  async offer(id) {
    const pc = this.create(id);
    try {
      for (const kind of ["audio", "video"]) {
        pc.addTransceiver(this.tracks[kind] || kind, { direction: "sendrecv" });
      }
      const offer = await pc.createOffer();
      if (this.pcs.get(id) !== pc) return;
      await pc.setLocalDescription(offer);
      this.send({ to: id, description: { type: offer.type, sdp: offer.sdp } });
      this.applyBitrate(pc);
    } catch (error) {
      console.warn("offer to", id, "failed", error);
    }
  }

  async handleSignal(message) {
    const id = message.from;
    if (typeof id !== "number") return;
    try {
      if (message.description?.type === "offer") {
        await this.answer(id, message.description);
      } else if (message.description?.type === "answer") {
        const pc = this.pcs.get(id);
        if (!pc || pc.signalingState !== "have-local-offer") return;
        await pc.setRemoteDescription(message.description);
        await this.flush(id, pc);
      }
      if (message.candidate) {
        const pc = this.pcs.get(id);
        const extra = this.extra.get(id);
        if (!pc || !extra) return;
        if (!pc.remoteDescription) extra.queue.push(message.candidate);
        else await pc.addIceCandidate(message.candidate).catch(() => {});
      }
    } catch (error) {
      console.warn("signal from", id, "failed", error);
    }
  }

  async answer(id, description) {
    // A new offer always means a new session on the other side: start afresh.
    const pc = this.create(id);
    await pc.setRemoteDescription(description);
    for (const transceiver of pc.getTransceivers()) {
      const kind = transceiver.receiver.track?.kind;
      if (kind !== "audio" && kind !== "video") continue;
      transceiver.direction = "sendrecv";
      await transceiver.sender.replaceTrack(this.tracks[kind]);
    }
    const answer = await pc.createAnswer();
    if (this.pcs.get(id) !== pc) return;
    await pc.setLocalDescription(answer);
    this.send({ to: id, description: { type: answer.type, sdp: answer.sdp } });
    await this.flush(id, pc);
    this.applyBitrate(pc);
  }

  async flush(id, pc) {
    const extra = this.extra.get(id);
    if (!extra) return;
    const queued = extra.queue.splice(0);
    for (const candidate of queued) {
      await pc.addIceCandidate(candidate).catch(() => {});
    }
  }

  // Send another track of this kind (screen instead of camera, another device, or none).
  async replaceTrack(kind, track) {
    this.tracks[kind] = track;
    const jobs = [];
    for (const pc of this.pcs.values()) {
      for (const transceiver of pc.getTransceivers()) {
        if (transceiver.receiver.track?.kind === kind && !transceiver.stopped) {
          jobs.push(transceiver.sender.replaceTrack(track).catch(() => {}));
        }
      }
    }
    await Promise.all(jobs);
  }

  // Cap the video bitrate on every connection (each peer costs upload in a mesh).
  setMaxBitrate(bps) {
    this.maxBitrate = bps;
    for (const pc of this.pcs.values()) this.applyBitrate(pc);
  }

  applyBitrate(pc) {
    if (!this.maxBitrate) return;
    for (const sender of pc.getSenders()) {
      const kind = sender.track?.kind ?? null;
      const transceiver = pc.getTransceivers().find((t) => t.sender === sender);
      if ((kind ?? transceiver?.receiver.track?.kind) !== "video") continue;
      const params = sender.getParameters();
      if (!params.encodings || params.encodings.length === 0) continue;
      params.encodings[0].maxBitrate = this.maxBitrate;
      sender.setParameters(params).catch(() => {});
    }
  }

  remoteStream(id) {
    return this.extra.get(id)?.stream ?? null;
  }

  // {rttMs, loss, framesDecoded} of one connection; loss is the fraction of packets lost
  // since the previous call.
  async quality(id) {
    const pc = this.pcs.get(id);
    const extra = this.extra.get(id);
    if (!pc || !extra || pc.connectionState === "closed") return null;
    const report = await pc.getStats();
    let rttMs = null;
    let lost = 0;
    let received = 0;
    let framesDecoded = 0;
    report.forEach((stat) => {
      if (stat.type === "candidate-pair" && stat.nominated && stat.state === "succeeded") {
        if (typeof stat.currentRoundTripTime === "number") rttMs = stat.currentRoundTripTime * 1000;
      }
      if (stat.type === "inbound-rtp") {
        lost += stat.packetsLost || 0;
        received += stat.packetsReceived || 0;
        if (stat.kind === "video") framesDecoded += stat.framesDecoded || 0;
      }
    });
    const previous = extra.counters || { lost: 0, received: 0 };
    extra.counters = { lost, received };
    const dLost = Math.max(0, lost - previous.lost);
    const dReceived = Math.max(0, received - previous.received);
    const loss = dLost + dReceived > 0 ? dLost / (dLost + dReceived) : null;
    return { rttMs, loss, framesDecoded, state: pc.connectionState };
  }
}

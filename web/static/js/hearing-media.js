// Shared by the pre-join page and the hearing room: translated texts, local camera/microphone,
// the microphone level meter and the devices chosen on the pre-join page.

const PREFS_KEY = "yuntiao.media";

// Texts come translated from the server in a data attribute (this file has no gettext).
export function readTexts(element) {
  try {
    return JSON.parse(element?.dataset.texts || "{}");
  } catch {
    return {};
  }
}

export function makeT(texts) {
  return (key, params = {}) => {
    const text = texts[key] ?? key;
    return text.replace(/%\((\w+)\)s/g, (match, name) => (name in params ? String(params[name]) : match));
  };
}

export function loadPrefs() {
  try {
    return JSON.parse(sessionStorage.getItem(PREFS_KEY) || "{}") || {};
  } catch {
    return {};
  }
}

export function savePrefs(prefs) {
  try {
    sessionStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
  } catch {
    // Private mode or storage disabled: the room then uses the default devices.
  }
}

export function mediaSupported() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.isSecureContext);
}

function audioConstraints(prefs) {
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (prefs.audioId) audio.deviceId = { ideal: prefs.audioId };
  return audio;
}

function videoConstraints(prefs, size) {
  const video = {
    width: { ideal: size.width },
    height: { ideal: size.height },
    frameRate: { ideal: size.frameRate, max: size.frameRate },
  };
  if (prefs.videoId) video.deviceId = { ideal: prefs.videoId };
  return video;
}

// Camera and microphone, degrading step by step: both, then sound only, then picture only.
// Returns {stream, audioError, videoError}; a missing kind carries the browser's error.
export async function startLocalMedia(prefs = {}, size = { width: 640, height: 480, frameRate: 24 }) {
  const result = { stream: new MediaStream(), audioError: null, videoError: null };
  if (!mediaSupported()) {
    const error = new Error("unsupported");
    error.name = "NotSupportedError";
    result.audioError = error;
    result.videoError = error;
    return result;
  }
  const wantVideo = !prefs.audioOnly;
  const attempts = wantVideo
    ? [
        { audio: true, video: true },
        { audio: true, video: false },
        { audio: false, video: true },
      ]
    : [{ audio: true, video: false }];
  let lastError = null;
  for (const attempt of attempts) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: attempt.audio ? audioConstraints(prefs) : false,
        video: attempt.video ? videoConstraints(prefs, size) : false,
      });
      result.stream = stream;
      if (!attempt.audio) result.audioError = lastError;
      if (!attempt.video && wantVideo) result.videoError = lastError;
      return result;
    } catch (error) {
      lastError = error;
      if (error.name === "NotAllowedError" || error.name === "SecurityError") break;
    }
  }
  result.audioError = lastError;
  result.videoError = wantVideo ? lastError : null;
  return result;
}

// The pre-join page hands its running camera and microphone to the room when it enters without
// a page load: no second getUserMedia (~100 ms, and a second permission prompt on some phones).
let handedOver = null;

export function handOver(result) {
  handedOver = result;
}

export function takeHandedOver() {
  const result = handedOver;
  handedOver = null;
  return result;
}

// Which guidance text fits an error of getUserMedia.
export function errorKey(error, kind) {
  if (!error) return null;
  switch (error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "denied";
    case "NotReadableError":
    case "AbortError":
      return "busy";
    case "NotSupportedError":
    case "TypeError":
      return "unsupported";
    case "NotFoundError":
    case "OverconstrainedError":
    default:
      return kind === "video" ? "no_camera" : "no_microphone";
  }
}

// Calls onLevel(0..1) about ten times a second with the loudness of the stream's audio track.
// Returns a function that stops it.
export function levelMeter(stream, onLevel) {
  const track = stream.getAudioTracks()[0];
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!track || !Context) {
    onLevel(0);
    return () => {};
  }
  const context = new Context();
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  // Browsers start an AudioContext suspended until the page has been used; retry on a tap.
  const resume = () => context.resume().catch(() => {});
  resume();
  document.addEventListener("pointerdown", resume, { once: true });
  const timer = setInterval(() => {
    if (!track.enabled || track.readyState !== "live") {
      onLevel(0);
      return;
    }
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const value of samples) sum += value * value;
    const rms = Math.sqrt(sum / samples.length);
    // Speech is roughly 0.01–0.3 RMS; a square root spreads it over the bar.
    onLevel(Math.min(1, Math.sqrt(rms * 4)));
  }, 100);
  return () => {
    clearInterval(timer);
    source.disconnect();
    context.close().catch(() => {});
  };
}

export function stopStream(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

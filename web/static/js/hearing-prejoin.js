// Pre-join page: camera/microphone preview, device choice, level meter and clear guidance when
// something is refused or missing. The choice is kept (sessionStorage) for the hearing room.
import {
  errorKey,
  levelMeter,
  loadPrefs,
  makeT,
  mediaSupported,
  readTexts,
  savePrefs,
  startLocalMedia,
  stopStream,
} from "./hearing-media.js";

const box = document.getElementById("device-check");
if (box) {
  const t = makeT(readTexts(box));
  const video = document.getElementById("preview");
  const placeholder = document.getElementById("preview-placeholder");
  const status = document.getElementById("device-status");
  const bar = document.getElementById("level-bar");
  const cameraSelect = document.getElementById("camera-select");
  const micSelect = document.getElementById("microphone-select");
  const audioOnly = document.getElementById("audio-only");
  const dialIn = document.getElementById("dial-in");
  const form = document.getElementById("ready-form");

  const prefs = loadPrefs();
  audioOnly.checked = Boolean(prefs.audioOnly);
  let stream = null;
  let stopMeter = () => {};

  const setStatus = (messages, problem) => {
    status.textContent = messages.join(" ");
    status.classList.toggle("device-problem", problem);
    dialIn.classList.toggle("dial-in-emphasis", problem);
  };

  const fillSelect = (select, devices, chosen, labelKey) => {
    select.replaceChildren();
    const first = document.createElement("option");
    first.value = "";
    first.textContent = t("default_device");
    select.append(first);
    devices.forEach((device, index) => {
      const option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent = device.label || t(labelKey, { n: index + 1 });
      option.selected = device.deviceId === chosen;
      select.append(option);
    });
    select.disabled = devices.length === 0;
  };

  const listDevices = async () => {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const current = (kind) => stream?.getTracks().find((track) => track.kind === kind)?.getSettings().deviceId;
    fillSelect(cameraSelect, devices.filter((d) => d.kind === "videoinput" && d.deviceId),
      prefs.videoId || current("video"), "camera_n");
    fillSelect(micSelect, devices.filter((d) => d.kind === "audioinput" && d.deviceId),
      prefs.audioId || current("audio"), "microphone_n");
    cameraSelect.disabled = cameraSelect.disabled || audioOnly.checked;
  };

  const start = async () => {
    stopMeter();
    stopStream(stream);
    setStatus([t("starting")], false);
    if (!mediaSupported()) {
      setStatus([t("unsupported")], true);
      return;
    }
    const result = await startLocalMedia(prefs);
    stream = result.stream;
    const hasVideo = stream.getVideoTracks().length > 0;
    const hasAudio = stream.getAudioTracks().length > 0;
    video.srcObject = hasVideo ? stream : null;
    video.hidden = !hasVideo;
    placeholder.hidden = hasVideo;
    stopMeter = levelMeter(stream, (level) => {
      bar.style.transform = `scaleX(${level.toFixed(3)})`;
    });
    const messages = [];
    const audioKey = errorKey(result.audioError, "audio");
    const videoKey = errorKey(result.videoError, "video");
    if (!hasAudio && !hasVideo) {
      messages.push(t(audioKey === "no_microphone" && videoKey === "no_camera" ? "no_devices" : audioKey || "no_devices"));
    } else {
      if (!hasAudio) messages.push(t(audioKey || "no_microphone"));
      if (!hasVideo && prefs.audioOnly) messages.push(t("audio_only_chosen"));
      else if (!hasVideo) messages.push(t(videoKey || "no_camera"));
      if (hasAudio && (hasVideo || prefs.audioOnly)) messages.unshift(t("ready"));
    }
    setStatus(messages, !hasAudio || (!hasVideo && !prefs.audioOnly));
    await listDevices().catch(() => {});
  };

  cameraSelect.addEventListener("change", () => {
    prefs.videoId = cameraSelect.value;
    savePrefs(prefs);
    start();
  });
  micSelect.addEventListener("change", () => {
    prefs.audioId = micSelect.value;
    savePrefs(prefs);
    start();
  });
  audioOnly.addEventListener("change", () => {
    prefs.audioOnly = audioOnly.checked;
    savePrefs(prefs);
    start();
  });
  navigator.mediaDevices?.addEventListener?.("devicechange", () => listDevices().catch(() => {}));
  form?.addEventListener("submit", () => {
    savePrefs(prefs);
    // Free the camera for the room page (some phones allow only one user at a time).
    stopMeter();
    stopStream(stream);
  });
  start();
}

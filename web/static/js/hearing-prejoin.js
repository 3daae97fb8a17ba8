// Pre-join page: camera/microphone preview, device choice, level meter and clear guidance when
// something is refused or missing. The choice is kept (sessionStorage) for the hearing room.
import {
  errorKey,
  handOver,
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
  let lastResult = null;
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
    lastResult = result;
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
  const release = () => {
    // Free the camera for the room page (some phones allow only one user at a time).
    stopMeter();
    stopStream(stream);
  };

  // Enter the room without a page load: post the form, and when the answer is the room page,
  // put its body in place, keep the running camera and microphone, and start the room's
  // scripts. Anything else (a refusal to show, an old browser, a network error) falls back to
  // the ordinary form submission, which shows the server's answer as a page.
  const enterInPlace = async () => {
    const response = await fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" });
    const url = new URL(response.url);
    if (!response.ok || !url.pathname.endsWith("/room")) throw new Error("not the room");
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    if (!page.getElementById("hearing-room")) throw new Error("not the room");
    stopMeter();
    handOver(lastResult);
    for (const link of page.head.querySelectorAll('link[rel="stylesheet"]')) {
      if (![...document.styleSheets].some((sheet) => sheet.href === link.href)) document.head.append(link);
    }
    document.title = page.title;
    document.documentElement.lang = page.documentElement.lang;
    document.body.replaceWith(page.body);
    for (const script of page.head.querySelectorAll('script[type="module"][src]')) {
      await import(new URL(script.getAttribute("src"), location.href).href);
    }
    // Last: the address says "room" once the room runs (a reload then opens the room page).
    history.replaceState(null, "", url.pathname);
  };

  form?.addEventListener("submit", (event) => {
    savePrefs(prefs);
    if (form.dataset.submitted || !window.fetch || !window.DOMParser || !lastResult) {
      release();
      return;
    }
    event.preventDefault();
    form.dataset.submitted = "yes";
    form.querySelector('button[type="submit"]')?.setAttribute("disabled", "");
    enterInPlace().catch(() => {
      release();
      form.submit();
    });
  });
  start();
}

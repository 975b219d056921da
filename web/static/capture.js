// Capture page: microphone -> WHIP publish -> captions back over the data channel.
(() => {
  'use strict';

  // Same rule as the server (server/rooms.py), so a bad name is caught before asking for the mic.
  const ROOM_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
  const ICE_TIMEOUT_MS = 2000;
  // The server finalises the last utterance before answering DELETE; wait a little for that
  // final line, but never leave the page hanging on a slow server.
  const STOP_WAIT_MS = 5000;
  const PC_STATES = {
    new: 'connecting', connecting: 'connecting', connected: 'live',
    disconnected: 'disconnected', failed: 'failed', closed: 'idle',
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $('capture'), room: $('room'), share: $('share'), stop: $('stop'),
    state: $('state'), level: $('level'), activity: $('activity'), error: $('error'),
    captions: $('captions'), token: $('token'), links: $('share-links'),
  };

  let state = 'idle';
  // The current share attempt. Every async step checks it is still current, so a Stop pressed
  // mid-way (or a second share) cannot be undone by a slow step of the old attempt.
  let session = null;

  const view = new window.NovaCaptionView(ui.captions, {
    onStatus: showActivity,
    onError: (m) => showError(m.message || m.code || 'The server reported an error.'),
  });

  function setState(name) {
    state = name;
    ui.state.textContent = name;
    ui.state.dataset.state = name;
  }

  function setBusy(busy) {
    ui.share.disabled = busy;
    ui.stop.disabled = !busy;
    ui.room.disabled = busy;
  }

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.textContent = '';
    ui.error.hidden = true;
  }

  function showActivity(m) {
    let text = m.speech ? 'Hearing speech' : 'Listening';
    // Only worth mentioning when the server is falling behind enough for people to notice.
    if (m.queue_delay >= 0.5) text += ` · server ${m.queue_delay.toFixed(1)} s behind`;
    ui.activity.textContent = text;
    ui.activity.dataset.speech = String(Boolean(m.speech));
  }

  function micMessage(err) {
    switch (err && err.name) {
      case 'NotAllowedError':
      case 'SecurityError':
        return 'Microphone access was refused. Allow the microphone for this page in the browser\'s site settings, then press Share microphone again.';
      case 'NotFoundError':
      case 'OverconstrainedError':
        return 'No microphone was found. Connect one, then press Share microphone again.';
      case 'NotReadableError':
        return 'The microphone could not be opened; another application may be using it.';
      default:
        return `The microphone could not be opened (${(err && err.message) || err}).`;
    }
  }

  function iceGathered(pc, ms) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => { if (pc.iceGatheringState === 'complete') done(); };
      // Some networks never finish gathering (an unreachable STUN/TURN); what we have by then is enough.
      const timer = setTimeout(() => done(), ms);
      function done() {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  function startMeter(s) {
    const analyser = s.audio.createAnalyser();
    analyser.fftSize = 1024;
    // Not connected to the speakers: the meter must not play the mic back into the room.
    s.audio.createMediaStreamSource(s.stream).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    let shown = 0;
    const tick = () => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
      const rms = Math.sqrt(sum / buf.length);
      // Speech spans about -60..0 dBFS; on a linear scale quiet talk would barely move the bar.
      const level = Math.min(1, Math.max(0, (20 * Math.log10(rms + 1e-9) + 60) / 60));
      // Fast attack, slow release: readable instead of jittery.
      shown = level > shown ? level : shown * 0.85 + level * 0.15;
      ui.level.style.width = `${(shown * 100).toFixed(1)}%`;
      s.raf = requestAnimationFrame(tick);
    };
    s.raf = requestAnimationFrame(tick);
  }

  // Frees the microphone and the peer connection; safe to call more than once.
  function release(s) {
    s.released = true;
    cancelAnimationFrame(s.raf);
    if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
    if (s.audio && s.audio.state !== 'closed') s.audio.close().catch(() => {});
    if (s.pc) s.pc.close();
    ui.level.style.width = '0%';
  }

  function deleteSession(url) {
    // keepalive lets the DELETE outlive the page when it is sent on the way out.
    if (!url) return Promise.resolve();
    return fetch(url, { method: 'DELETE', keepalive: true }).catch(() => {});
  }

  function fail(s, message, next = 'failed') {
    if (session !== s) return;
    session = null;
    showError(message);
    release(s);
    deleteSession(s.location);
    setState(next);
    setBusy(false);
  }

  async function share() {
    clearError();
    const room = ui.room.value.trim();
    if (!ROOM_NAME.test(room)) {
      showError('Room names are 1-64 letters, digits, "-" or "_", starting with a letter or digit.');
      ui.room.focus();
      return;
    }
    if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
      showError('This browser only allows the microphone on secure pages: open Nova Voice over https:// or http://localhost.');
      return;
    }
    // Created synchronously in the click, so the autoplay policy lets it run.
    const s = {
      room, audio: new AudioContext(), stream: null, pc: null, dcClosed: null,
      location: null, raf: 0, released: false,
    };
    session = s;
    view.clear();
    ui.activity.textContent = '';
    setState('connecting');
    setBusy(true);

    try {
      s.stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          // Measured through headless Chromium (issue 12, bench/results/browser.md): noise
          // suppression and gain control reshape the sound Whisper was trained on and cost
          // words; the server's VAD and model handle noise. Echo cancellation only removes
          // what this browser itself plays.
          echoCancellation: true, noiseSuppression: false, autoGainControl: false,
        },
      });
    } catch (err) {
      fail(s, micMessage(err), 'idle'); // nothing was connected, so nothing failed
      return;
    }
    if (session !== s) { release(s); return; }
    s.audio.resume().catch(() => {});
    startMeter(s);

    const pc = (s.pc = new RTCPeerConnection());
    pc.addEventListener('connectionstatechange', () => {
      if (session !== s) return;
      if (pc.connectionState === 'failed') {
        fail(s, 'The connection to the Nova Voice server failed. Press Share microphone to try again.');
      } else {
        setState(PC_STATES[pc.connectionState] || pc.connectionState);
      }
    });
    for (const track of s.stream.getAudioTracks()) pc.addTransceiver(track, { direction: 'sendonly' });
    const dc = pc.createDataChannel('captions');
    s.dcClosed = new Promise((resolve) => dc.addEventListener('close', resolve));
    // Not tied to `session`: during Stop the last final arrives after the session is let go.
    dc.addEventListener('message', (e) => { if (!s.released) view.apply(e.data); });

    let res;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc, ICE_TIMEOUT_MS);
      if (session !== s) return;
      res = await fetch(`/whip/${encodeURIComponent(room)}`, {
        method: 'POST',
        headers: Object.assign(
          { 'Content-Type': 'application/sdp' },
          ui.token.value.trim() ? { Authorization: `Bearer ${ui.token.value.trim()}` } : {},
        ),
        body: pc.localDescription.sdp,
      });
    } catch (err) {
      fail(s, err instanceof TypeError
        ? 'Cannot reach the Nova Voice server. Check that it is running and that this page\'s address is right, then try again.'
        : `Could not prepare the connection (${err.message}).`);
      return;
    }
    const body = await res.text().catch(() => '');
    const loc = res.headers.get('Location');
    if (res.status === 201 && loc) s.location = new URL(loc, res.url).href;
    // Stopped while the POST was in flight: the server made a session we no longer want.
    if (session !== s) { deleteSession(s.location); return; }
    if (res.status !== 201) {
      let message = `The server refused the connection (HTTP ${res.status}).`;
      try { message = JSON.parse(body).message || message; } catch { /* not JSON: keep the generic text */ }
      fail(s, message);
      return;
    }
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
    } catch (err) {
      fail(s, `The server's answer could not be used (${err.message}).`);
      return;
    }
    const url = new URL(window.location.href);
    url.searchParams.set('room', room);
    history.replaceState(null, '', url); // so a reload or a copied link keeps the room
    showLinks(room);
  }

  // Where else these captions can be shown: the OBS overlay, the widget, the transcripts.
  function showLinks(room) {
    const base = window.location.origin;
    const r = encodeURIComponent(room);
    $('overlay-url').value = `${base}/overlay/${r}`;
    $('widget-snippet').value = `<script src="${base}/widget.js" data-room="${room}" async></` + 'script>';
    const list = $('transcripts');
    list.textContent = '';
    for (const fmt of ['vtt', 'srt', 'txt', 'json']) {
      const a = document.createElement('a');
      a.href = `${base}/rooms/${r}/transcript.${fmt}`;
      a.textContent = fmt.toUpperCase();
      a.target = '_blank';
      list.append(a, ' ');
    }
    ui.links.hidden = false;
  }

  ui.links.addEventListener('click', async (e) => {
    const button = e.target.closest('button.copy');
    if (!button) return;
    const field = $(button.dataset.copy);
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
    } catch {
      document.execCommand('copy'); // plain http pages have no async clipboard
    }
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  });

  async function stop() {
    const s = session;
    if (!s) return;
    session = null;
    // The mic goes off at once, but the peer stays open: the server answers DELETE only after
    // sending the last final, then closes the channel, so its close means nothing more will come.
    cancelAnimationFrame(s.raf);
    if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
    ui.level.style.width = '0%';
    ui.stop.disabled = true;
    if (s.location) {
      const drained = deleteSession(s.location).then((res) => (res && res.ok ? s.dcClosed : null));
      await Promise.race([drained, new Promise((r) => setTimeout(r, STOP_WAIT_MS))]);
    }
    release(s);
    ui.activity.textContent = '';
    setState('idle');
    setBusy(false);
  }

  ui.form.addEventListener('submit', (e) => { e.preventDefault(); share(); });
  ui.stop.addEventListener('click', () => { stop(); });
  window.addEventListener('pagehide', () => {
    if (!session) return;
    deleteSession(session.location);
    release(session);
    session = null;
  });

  const fromUrl = new URLSearchParams(window.location.search).get('room');
  if (fromUrl) ui.room.value = fromUrl;
  setState('idle');
  setBusy(false);

  window.novaCapture = {
    state: () => state,
    finals: () => view.finals(),
    partial: () => view.partial(),
  };
})();

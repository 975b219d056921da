// Capture page: microphone -> WHIP publish -> captions back over the data channel.
(() => {
  'use strict';

  // Same rule as the server (server/rooms.py), so a bad name is caught before asking for the mic.
  const ROOM_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
  const ICE_TIMEOUT_MS = 2000;
  // The server sends a status at least twice a second on the captions channel: this long
  // without one, the server or the network is gone (ICE alone takes 10-30 s to notice).
  const STALE_MS = 1500;
  const RETRY_MAX_MS = 10000;
  // The server finalises the last utterance before answering DELETE; wait a little for that
  // final line, but never leave the page hanging on a slow server.
  const STOP_WAIT_MS = 5000;
  const PC_STATES = {
    new: 'connecting', connecting: 'connecting', connected: 'live',
    disconnected: 'disconnected', failed: 'failed', closed: 'idle',
  };
  const STATE_TEXT = { lost: 'connection lost' };

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $('capture'), room: $('room'), share: $('share'), stop: $('stop'),
    state: $('state'), level: $('level'), activity: $('activity'), error: $('error'),
    captions: $('captions'), token: $('token'), links: $('share-links'),
    watch: $('watch-lang'), watchRow: $('watch-row'),
  };
  // A viewer of one of the room's translations, while the speaker watches one instead of
  // their own words; null while they watch the spoken language (the publisher's own channel).
  let watcher = null;

  let state = 'idle';
  // The current share attempt. Every async step checks it is still current, so a Stop pressed
  // mid-way (or a second share) cannot be undone by a slow step of the old attempt.
  let session = null;

  const view = new window.NovaCaptionView(ui.captions, {
    lines: 0, // the capture page keeps the whole session as a log
    onStatus: showActivity,
    onError: (m) => showError(m.message || m.code || 'The server reported an error.'),
  });

  function setState(name) {
    state = name;
    ui.state.textContent = STATE_TEXT[name] || name;
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
    clearTimeout(s.watchdog);
    clearTimeout(s.retryTimer);
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
      room, token: ui.token.value.trim(), audio: new AudioContext(), stream: null, pc: null,
      dcClosed: null, location: null, raf: 0, released: false, watchdog: 0, retryTimer: 0,
      attempt: 0, wasLive: false,
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
    await connect(s);
  }

  async function iceServers(s) {
    try {
      // With --view-token, /ice wants a token: the room's publish token opens it.
      const q = s.token ? `?room=${encodeURIComponent(s.room)}&token=${encodeURIComponent(s.token)}` : '';
      const r = await fetch(`/ice${q}`, { cache: 'no-store' });
      if (r.ok) return (await r.json()).iceServers || [];
    } catch { /* /ice unreachable: the POST below will say so */ }
    return [];
  }

  // Nothing heard from the server for STALE_MS: say so at once, drop what can no longer be
  // finished, and keep trying in the background with the same microphone.
  function lost(s, pc) {
    if (session !== s || s.pc !== pc) return;
    clearTimeout(s.watchdog);
    s.pc = null;
    pc.close();
    deleteSession(s.location);
    s.location = null;
    view.clearPartials();
    ui.activity.textContent = '';
    setState('lost');
    retry(s);
  }

  function retry(s, afterMs) {
    const delay = afterMs ?? Math.min(RETRY_MAX_MS, 500 * 2 ** s.attempt) * (0.75 + Math.random() * 0.5);
    s.attempt += 1;
    ui.activity.textContent = `Reconnecting in ${Math.ceil(delay / 1000)} s…`;
    clearTimeout(s.retryTimer);
    s.retryTimer = setTimeout(() => { if (session === s) connect(s); }, delay);
  }

  function alive(s, pc) {
    clearTimeout(s.watchdog);
    s.watchdog = setTimeout(() => lost(s, pc), STALE_MS);
  }

  async function connect(s) {
    const reconnecting = s.wasLive;
    const pc = (s.pc = new RTCPeerConnection({ iceServers: await iceServers(s) }));
    if (session !== s || s.pc !== pc) { pc.close(); return; }
    pc.addEventListener('connectionstatechange', () => {
      if (session !== s || s.pc !== pc) return;
      if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected') {
        if (s.wasLive) lost(s, pc);
        else if (pc.connectionState === 'failed') {
          fail(s, 'The connection to the Nova Voice server failed. Press Share microphone to try again.');
        }
      } else if (pc.connectionState === 'connected') {
        s.wasLive = true;
        s.attempt = 0;
        ui.activity.textContent = '';
        setState('live');
      } else if (!reconnecting) {
        setState(PC_STATES[pc.connectionState] || pc.connectionState);
      }
    });
    for (const track of s.stream.getAudioTracks()) pc.addTransceiver(track, { direction: 'sendonly' });
    const dc = pc.createDataChannel('captions');
    s.dcClosed = new Promise((resolve) => dc.addEventListener('close', resolve));
    dc.addEventListener('open', () => alive(s, pc));
    // Not tied to `session`: during Stop the last final arrives after the session is let go.
    dc.addEventListener('message', (e) => {
      if (s.released) return;
      if (session === s && s.pc === pc) alive(s, pc);
      if (!watcher) view.apply(e.data); // while a translation is watched, its viewer draws
    });

    let res;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc, ICE_TIMEOUT_MS);
      if (session !== s || s.pc !== pc) return;
      res = await fetch(`/whip/${encodeURIComponent(s.room)}`, {
        method: 'POST',
        headers: Object.assign(
          { 'Content-Type': 'application/sdp' },
          s.token ? { Authorization: `Bearer ${s.token}` } : {},
        ),
        body: pc.localDescription.sdp,
      });
    } catch (err) {
      if (reconnecting && session === s) { retry(s); return; } // still unreachable: keep trying
      fail(s, err instanceof TypeError
        ? 'Cannot reach the Nova Voice server. Check that it is running and that this page\'s address is right, then try again.'
        : `Could not prepare the connection (${err.message}).`);
      return;
    }
    const body = await res.text().catch(() => '');
    const loc = res.headers.get('Location');
    if (res.status === 201 && loc) s.location = new URL(loc, res.url).href;
    // Stopped while the POST was in flight: the server made a session we no longer want.
    if (session !== s || s.pc !== pc) { deleteSession(s.location); return; }
    if (res.status !== 201) {
      // A server that is draining or full says when to come back; anything else is final.
      if (reconnecting && (res.status === 503 || res.status === 429 || res.status >= 500)) {
        const after = Number(res.headers.get('Retry-After'));
        retry(s, after > 0 ? Math.min(after * 1000, RETRY_MAX_MS) : undefined);
        return;
      }
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
    url.searchParams.set('room', s.room);
    history.replaceState(null, '', url); // so a reload or a copied link keeps the room
    showLinks(s.room);
    loadLanguages(s.room);
  }

  // The room's translations, offered in the "Show captions in" list (a reconnect keeps the choice).
  async function loadLanguages(room) {
    const chosen = ui.watch.value;
    ui.watch.replaceChildren(new Option('the spoken language', ''));
    try {
      // A private room shows its languages to holders of its publish (or view) token only.
      const token = session && session.token;
      const res = await fetch(`/rooms/${encodeURIComponent(room)}`, {
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      });
      if (res.ok) for (const lang of (await res.json()).languages || []) ui.watch.append(new Option(lang, lang));
    } catch { /* no list: the spoken language only */ }
    ui.watch.value = [...ui.watch.options].some((o) => o.value === chosen) ? chosen : '';
    ui.watchRow.hidden = ui.watch.options.length < 2;
  }

  function watch(lang) {
    if (watcher) watcher.stop();
    watcher = null;
    view.clear();
    if (session) showLinks(session.room);
    if (!lang || !session) return;
    watcher = new window.NovaViewer({
      server: '', room: session.room, lang,
      onMessage: (m) => view.apply(m),
      onConnect: () => view.clear(), // the server replays the recent lines to each connection
    }).start();
  }

  // Where else these captions can be shown: the OBS overlay, the widget, the transcripts.
  function showLinks(room) {
    const base = window.location.origin;
    const r = encodeURIComponent(room);
    const lang = ui.watch.value;
    const q = lang ? `?lang=${encodeURIComponent(lang)}` : '';
    const dataLang = lang ? ` data-lang="${lang}"` : '';
    $('overlay-url').value = `${base}/overlay/${r}${q}`;
    $('widget-snippet').value = `<script src="${base}/widget.js" data-room="${room}"${dataLang} async></` + 'script>';
    const list = $('transcripts');
    list.textContent = '';
    for (const fmt of ['vtt', 'srt', 'txt', 'json']) {
      const a = document.createElement('a');
      a.href = `${base}/rooms/${r}/transcript.${fmt}${q}`;
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
    clearTimeout(s.watchdog);
    clearTimeout(s.retryTimer);
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
    if (watcher) watcher.stop();
    watcher = null;
    ui.watch.value = '';
    ui.activity.textContent = '';
    setState('idle');
    setBusy(false);
  }

  ui.form.addEventListener('submit', (e) => { e.preventDefault(); share(); });
  ui.stop.addEventListener('click', () => { stop(); });
  ui.watch.addEventListener('change', () => watch(ui.watch.value));
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
    watching: () => (watcher ? ui.watch.value : ''),
  };
})();

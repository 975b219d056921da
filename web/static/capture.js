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
  const ROOM_HELP = 'Room names are 1-64 letters, digits, "-" or "_", starting with a letter or digit: check the Room field above.';
  // Where the page remembers the speaker's choices between visits (never the token).
  const STORE = { speaker: 'nova-voice.speaker', mode: 'nova-voice.mode', draft: 'nova-voice.dictation' };

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $('capture'), room: $('room'), share: $('share'), stop: $('stop'),
    state: $('state'), level: $('level'), activity: $('activity'), error: $('error'),
    errorText: $('error-text'), errorAction: $('error-action'), errorOther: $('error-other'),
    captions: $('captions'), logs: $('logs'), token: $('token'), speaker: $('speaker'), links: $('share-links'),
    watch: $('watch-lang'), watchRow: $('watch-row'),
    vocab: $('vocab'), vocabulary: $('vocabulary'), replacements: $('replacements'), vocabApply: $('vocab-apply'), vocabHint: $('vocab-hint'),
    dictBox: $('dictation-box'), dict: $('dictation'), dictPartial: $('dictation-partial'),
    dictCopy: $('dictation-copy'), dictDownload: $('dictation-download'),
  };
  // A viewer of one of the room's translations, while the speaker watches one instead of
  // their own words; null while they watch the spoken language (the publisher's own channel).
  let watcher = null;

  let state = 'idle';
  // The current share attempt. Every async step checks it is still current, so a Stop pressed
  // mid-way (or a second share) cannot be undone by a slow step of the old attempt.
  let session = null;
  let mode = 'captions';
  let errorAction = null;
  let errorOther = null;

  function remember(key, value) {
    try { localStorage.setItem(key, value); } catch { /* storage off: nothing is remembered */ }
  }
  function recall(key) {
    try { return localStorage.getItem(key) || ''; } catch { return ''; }
  }

  // One log per language, each kept for the whole session: switching what is shown never
  // loses a line. '' is the spoken language, fed by the publisher's own channel all along.
  const views = new Map();
  function makeView(el) {
    return new window.NovaCaptionView(el, {
      lines: 0, // the capture page keeps the whole session as a log
      onStatus: showActivity,
      onError: serverSaid,
    });
  }
  views.set('', { el: ui.captions, view: makeView(ui.captions) });
  const view = views.get('').view;

  function viewFor(lang) {
    if (!views.has(lang)) {
      const el = document.createElement('div');
      el.className = 'captions';
      el.setAttribute('role', 'log');
      el.setAttribute('aria-live', 'polite');
      el.setAttribute('aria-label', `Captions in ${languageName(lang)}`);
      el.tabIndex = 0;
      el.dataset.lang = lang;
      el.hidden = true;
      ui.logs.append(el);
      views.set(lang, { el, view: makeView(el) });
    }
    return views.get(lang);
  }

  function showLanguage(lang) {
    for (const [l, v] of views) {
      v.el.hidden = l !== lang;
      if (l === lang) v.el.scrollTop = v.el.scrollHeight;
    }
  }

  function shownView() { return (views.get(ui.watch.value) || views.get('')).view; }

  function clearViews() {
    if (watcher) watcher.stop();
    watcher = null;
    ui.watch.value = '';
    for (const [l, v] of [...views]) {
      v.view.clear();
      if (l) { v.el.remove(); views.delete(l); }
    }
    showLanguage('');
  }

  // "Español (es)": the language's own name, then its code; the bare code where the browser
  // has no name for it.
  function languageName(code) {
    try {
      const name = new Intl.DisplayNames([code], { type: 'language' }).of(code);
      if (name && name.toLowerCase() !== code.toLowerCase()) {
        return `${name.charAt(0).toLocaleUpperCase(code)}${name.slice(1)} (${code})`;
      }
    } catch { /* an old browser, or a code Intl does not know */ }
    return code;
  }

  function setState(name) {
    state = name;
    ui.state.textContent = STATE_TEXT[name] || name;
    ui.state.dataset.state = name;
    updateVocabulary();
    ui.dict.placeholder = DICTATION_HINT[name] || DICTATION_HINT.idle;
  }

  // The dictation area says what to do now, not what to do before sharing.
  const DICTATION_HINT = {
    idle: 'Press Share microphone and speak: each finished sentence is typed at the cursor. Click anywhere in the text to move the cursor.',
    connecting: 'Connecting the microphone…',
    live: 'Speak: each finished sentence is typed at the cursor. Click anywhere in the text to move the cursor.',
    lost: 'Connection lost: reconnecting. What you say until it is back is not typed.',
  };

  function setBusy(busy) {
    ui.share.disabled = busy;
    ui.stop.disabled = !busy;
    ui.room.disabled = busy;
    ui.speaker.disabled = busy;
    ui.token.disabled = busy;
  }

  /** ``action``: {label, run} for a button beside the message (Take over); ``other``: a second
   *  one. ``field``: the input the message asks the speaker to fill, marked and focused.
   *  ``notice``: a question or a situation (a name in use), not a failure: the warning colour. */
  function showError(text, { action = null, other = null, field = null, notice = false } = {}) {
    ui.errorText.textContent = text;
    ui.error.hidden = false;
    ui.error.dataset.kind = notice ? 'notice' : 'error';
    errorAction = action ? action.run : null;
    ui.errorAction.hidden = !action;
    ui.errorAction.textContent = action ? action.label : '';
    errorOther = other ? other.run : null;
    ui.errorOther.hidden = !other;
    ui.errorOther.textContent = other ? other.label : '';
    if (field) {
      field.setAttribute('aria-invalid', 'true');
      field.focus();
    }
  }

  function clearError() {
    ui.errorText.textContent = '';
    ui.error.hidden = true;
    ui.errorAction.hidden = true;
    ui.errorOther.hidden = true;
    errorAction = null;
    errorOther = null;
    for (const f of [ui.room, ui.token, ui.speaker]) f.removeAttribute('aria-invalid');
  }

  // A message the server sent on the captions channel: an output failing for a while is a
  // notice with the way to the outputs panel, anything else an error.
  function serverSaid(m) {
    if (m.code === 'output_failing') {
      showError(m.message, { notice: true, action: { label: 'Show outputs', run: () => outputs.open() } });
      return;
    }
    showError(m.message || m.code || 'The server reported an error.');
  }

  function showActivity(m) {
    if (Array.isArray(m.outputs)) outputs.fromStatus(m.outputs);
    let text = m.speech ? 'Hearing speech' : 'Listening';
    // Only worth mentioning when the server is falling behind enough for people to notice.
    if (m.queue_delay >= 0.5) text += ` · server ${m.queue_delay.toFixed(1)} s behind`;
    const names = Array.isArray(m.speakers) ? m.speakers.map(String) : [];
    if (names.length) text += ` · speaking here: ${names.join(', ')}`;
    ui.activity.textContent = text;
    ui.activity.dataset.speech = String(Boolean(m.speech));
    delete ui.activity.dataset.kind;
  }

  // The server's JSON error body: {"error": "code", "message": "...", ...} (server/edge/http.py),
  // or {"error": {"code", "message"}}; anything else gives empty strings.
  function errorOf(body) {
    try {
      const j = JSON.parse(body);
      const e = j && j.error;
      const suggestions = Array.isArray(j && j.suggestions) ? j.suggestions.map(String) : [];
      if (e && typeof e === 'object') return { code: String(e.code || ''), message: String(e.message || ''), suggestions };
      return { code: typeof e === 'string' ? e : '', message: String((j && j.message) || ''), suggestions };
    } catch {
      return { code: '', message: '', suggestions: [] };
    }
  }

  // A refused WHIP request in the page's words: which field to fill, and what to do next.
  function refusalText(s, status, { code, message, suggestions = [] }, reconnecting) {
    const who = s.speaker || 'Someone';
    if (code === 'speaker_taken') {
      const text = reconnecting
        ? `${who} is now speaking here from another tab or device.`
        : `${who} is already speaking here — take over? That ends the other session using this name.`;
      return { text, notice: true, next: 'idle', action: { label: `Take over as ${s.speaker}`, run: () => share(true) } };
    }
    if (code === 'too_many_speakers') {
      return {
        text: 'This room already has as many speakers as it allows. Wait for someone to stop, or ask whoever runs the room to allow more.',
        notice: true, next: 'idle',
      };
    }
    if (status === 401 || code === 'unauthorized') {
      return { text: 'This room is protected: paste its publish token above.', field: ui.token };
    }
    if (status === 403 && code === 'forbidden') {
      return { text: 'That publish token does not open this room: check the Publish token above.', field: ui.token };
    }
    if (code === 'invalid_room') return { text: ROOM_HELP, field: ui.room };
    if (code === 'unknown_room') {
      // A typo must not go live as a new room: say so, offer the room meant, and the new one.
      const create = { label: `Create "${s.room}"`, run: () => createRoom(s.room) };
      if (suggestions.length) {
        const meant = suggestions[0];
        return {
          text: `There is no room called "${s.room}" on this server. Did you mean "${meant}"? Your token opens it.`,
          field: ui.room, notice: true, next: 'idle',
          action: { label: `Use "${meant}"`, run: () => { ui.room.value = meant; share(); } },
          other: create,
        };
      }
      return {
        text: `There is no room called "${s.room}" on this server: check the Room field above, or create the room.`,
        field: ui.room, notice: true, next: 'idle', action: create,
      };
    }
    if (code.includes('speaker')) {
      return { text: `Check Your name above: ${message || 'the server did not accept it'}.`, field: ui.speaker };
    }
    if (code === 'draining') return { text: 'The server is restarting: press Share microphone again in a few seconds.' };
    if (code === 'server_full' || code === 'inference_unavailable') {
      return { text: 'The server is too busy to caption another microphone right now: try again in a minute.' };
    }
    if (status === 429) return { text: 'Too many attempts from this address: wait a moment, then press Share microphone again.' };
    return { text: message || `The server refused the connection (HTTP ${status}).` };
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

  function fail(s, message, next = 'failed', options = {}) {
    if (session !== s) return;
    session = null;
    release(s);
    deleteSession(s.location);
    ui.activity.textContent = ''; // no "Reconnecting…" left beside a session that has ended
    delete ui.activity.dataset.kind;
    setState(next);
    setBusy(false);
    showError(message, options); // after the fields are enabled again: it may focus one
  }

  /** ``takeover``: the speaker chose to take their name over from a session still live with it. */
  async function share(takeover = false) {
    if (session) return;
    clearError();
    const room = ui.room.value.trim();
    if (!ROOM_NAME.test(room)) {
      showError(ROOM_HELP, { field: ui.room });
      return;
    }
    const speaker = ui.speaker.value.trim();
    remember(STORE.speaker, speaker);
    if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
      showError('This browser only allows the microphone on secure pages: open Nova Voice over https:// or http://localhost.');
      return;
    }
    // Created synchronously in the click, so the autoplay policy lets it run.
    const s = {
      room, token: ui.token.value.trim(), speaker, takeover, audio: new AudioContext(), stream: null, pc: null,
      dcClosed: null, location: null, raf: 0, released: false, watchdog: 0, retryTimer: 0,
      attempt: 0, wasLive: false,
    };
    session = s;
    delete ui.vocabHint.dataset.result;
    clearViews();
    dictation.reset();
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
    for (const v of views.values()) v.view.clearPartials();
    dictation.clearPartials();
    ui.activity.textContent = '';
    setState('lost');
    retry(s);
  }

  function retry(s, afterMs) {
    const delay = afterMs ?? Math.min(RETRY_MAX_MS, 500 * 2 ** s.attempt) * (0.75 + Math.random() * 0.5);
    s.attempt += 1;
    ui.activity.textContent = `Reconnecting in ${Math.ceil(delay / 1000)} s…`;
    // Not the green of "Hearing speech": nothing is heard until the connection is back.
    ui.activity.dataset.speech = 'false';
    ui.activity.dataset.kind = 'reconnecting';
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
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      // The spoken language's log keeps filling while a translation is shown.
      view.apply(msg);
      if (msg && msg.type === 'caption') dictation.caption(msg, s);
      else if (msg && msg.type === 'settings') vocabularyApplied(msg);
    });

    let res;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc, ICE_TIMEOUT_MS);
      if (session !== s || s.pc !== pc) return;
      const q = new URLSearchParams();
      if (s.speaker) q.set('speaker', s.speaker);
      // Only the attempt the speaker chose; a reconnect never takes a name from someone else.
      if (s.takeover && !reconnecting) q.set('takeover', '1');
      res = await fetch(`/whip/${encodeURIComponent(s.room)}${q.toString() ? `?${q}` : ''}`, {
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
    if (res.status === 201) s.publisher = res.headers.get('Nova-Publisher');
    // Stopped while the POST was in flight: the server made a session we no longer want.
    if (session !== s || s.pc !== pc) { deleteSession(s.location); return; }
    if (res.status !== 201) {
      // A server that is draining or full says when to come back; anything else is final.
      if (reconnecting && (res.status === 503 || res.status === 429 || res.status >= 500)) {
        const after = Number(res.headers.get('Retry-After'));
        retry(s, after > 0 ? Math.min(after * 1000, RETRY_MAX_MS) : undefined);
        return;
      }
      const { text, next = 'failed', ...options } = refusalText(s, res.status, errorOf(body), reconnecting);
      fail(s, text, next, options);
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
    loadRoom(s);
  }

  // The room's translations, offered in the "Show captions in" list (a reconnect keeps the
  // choice), and its vocabulary, shown in the Vocabulary field unless the speaker is editing it.
  async function loadRoom(s) {
    const chosen = ui.watch.value;
    let info = {};
    try {
      // A private room shows its languages to holders of its publish (or view) token only.
      const res = await fetch(`/rooms/${encodeURIComponent(s.room)}`, {
        headers: s.token ? { Authorization: `Bearer ${s.token}` } : {},
      });
      if (res.ok) info = await res.json();
    } catch { /* no list: the spoken language only */ }
    if (session !== s) return;
    ui.watch.replaceChildren(new Option('the spoken language', ''));
    for (const lang of info.languages || []) ui.watch.append(new Option(languageName(lang), lang));
    ui.watch.value = [...ui.watch.options].some((o) => o.value === chosen) ? chosen : '';
    ui.watchRow.hidden = ui.watch.options.length < 2 || mode === 'dictation';
    showVoices(s, info.voice || []);
    if (Array.isArray(info.vocabulary) && !ui.vocabulary.dataset.edited) {
      ui.vocabulary.value = info.vocabulary.join(', ');
    }
    if (info.replacements && typeof info.replacements === 'object' && !ui.replacements.dataset.edited) {
      ui.replacements.value = replacementLines(info.replacements);
    }
  }

  // The room's voice-over: a Listen button per spoken language (silent until clicked).
  let voice = null;
  function showVoices(s, langs) {
    const row = $('listen-row');
    const same = voice && voice.room === s.room && voice.langs.join() === langs.join();
    if (same) return;
    if (voice) voice.stop();
    row.replaceChildren();
    voice = null;
    row.hidden = !langs.length;
    if (!langs.length) return;
    voice = window.NovaVoice.control(row, { server: '', room: s.room, token: s.token, langs });
    voice.langs = langs;
  }

  function watch(lang) {
    if (watcher) watcher.stop();
    watcher = null;
    if (session) showLinks(session.room);
    if (!lang || !session) { showLanguage(''); return; }
    const { view: shown } = viewFor(lang);
    showLanguage(lang);
    // The server replays the recent lines to each connection: those already shown are known by
    // their segment and skipped, so coming back to a language keeps its earlier lines.
    watcher = new window.NovaViewer({
      server: '', room: session.room, lang,
      onMessage: (m) => shown.apply(m),
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
    // Each link downloads the file (?download=1 answers it as an attachment, named after the
    // room); the same URL without it opens in the browser.
    const dl = lang ? `?lang=${encodeURIComponent(lang)}&download=1` : '?download=1';
    for (const fmt of ['vtt', 'srt', 'txt', 'json']) {
      const a = document.createElement('a');
      a.href = `${base}/rooms/${r}/transcript.${fmt}${dl}`;
      a.textContent = fmt.toUpperCase();
      a.download = '';
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
    showLanguage('');
    dictation.clearPartials();
    ui.activity.textContent = '';
    setState('idle');
    setBusy(false);
  }

  // ---- A room made from the page (POST /rooms): its publish token shown once, in its field ----

  /** ``andShare``: go live in it at once (offered after a refused share). */
  async function createRoom(name, andShare = true) {
    clearError();
    const headers = { 'Content-Type': 'application/json' };
    let res;
    try {
      res = await fetch('/rooms', { method: 'POST', headers, body: JSON.stringify({ name }) });
    } catch {
      showError('Cannot reach the Nova Voice server: the room was not created.');
      return;
    }
    const body = await res.text().catch(() => '');
    if (res.status !== 201) {
      const { message } = errorOf(body);
      const text = res.status === 401
        ? 'Creating rooms on this server needs its server-wide publish token: ask whoever runs it.'
        : `The room was not created: ${message || `HTTP ${res.status}`}`;
      showError(text, { field: ui.room });
      return;
    }
    let made = {};
    try { made = JSON.parse(body); } catch { /* a 201 always has its body */ }
    ui.room.value = made.room || name;
    ui.token.value = made.publish_token || '';
    ui.token.type = 'text'; // shown once: the speaker copies it now or never
    if (andShare) share();
    else outputs.refresh();
    showError(`Room "${ui.room.value}" is created. Its publish token is in the Publish token field: copy it and keep it safe, it is shown only this once.`, { notice: true });
  }

  const outputs = new window.NovaOutputs({
    room: () => (session ? session.room : ui.room.value.trim()),
    token: () => (session ? session.token : ui.token.value.trim()),
    onCreateRoom: (name) => createRoom(name, false),
  });

  // ---- Vocabulary: terms the room's Whisper should expect, changed live (PATCH /rooms/{room}) ----

  function vocabularyTerms() {
    const seen = new Set();
    const terms = [];
    for (const raw of ui.vocabulary.value.split(/[,\n]/)) {
      const term = raw.trim().replace(/\s+/g, ' ');
      if (term && !seen.has(term.toLowerCase())) {
        seen.add(term.toLowerCase());
        terms.push(term);
      }
    }
    return terms;
  }

  // "heard = shown" a line ("->" and "=>" too); a line without a separator is not a replacement.
  function replacementsOf(text) {
    const out = {};
    for (const line of text.split('\n')) {
      const m = line.match(/^(.*?)\s*(?:=>|->|=)\s*(.*)$/);
      const heard = m ? m[1].trim().replace(/\s+/g, ' ') : '';
      if (heard) out[heard] = m[2].trim().replace(/\s+/g, ' ');
    }
    return out;
  }

  function replacementLines(replacements) {
    return Object.entries(replacements).map(([heard, shown]) => `${heard} = ${shown}`).join('\n');
  }

  // Only a publish token may change a room: while sharing with one, Apply sends the terms;
  // sharing into a room that has none, the field is shown disabled and says why.
  function updateVocabulary(note) {
    const s = session;
    const live = Boolean(s && s.location && (state === 'live' || state === 'connecting'));
    ui.vocabApply.disabled = !(live && s.token) || ui.vocabApply.dataset.busy === '1';
    ui.vocabulary.disabled = live && !s.token;
    ui.replacements.disabled = ui.vocabulary.disabled;
    if (note !== undefined) ui.vocabHint.textContent = note;
    else if (live && !s.token) {
      ui.vocabHint.textContent = 'This room was opened without a publish token, so its vocabulary cannot be changed here. To change it while you speak, use a room created with a publish token and paste the token above.';
    } else if (!live) {
      ui.vocabHint.textContent = 'Apply it while sharing the microphone with the room\'s publish token.';
    } else if (!ui.vocabHint.dataset.result) {
      ui.vocabHint.textContent = 'Applies from the next sentence on.';
    }
  }

  async function applyVocabulary() {
    const s = session;
    if (!s || !s.token) return;
    const terms = vocabularyTerms();
    const replacements = replacementsOf(ui.replacements.value);
    ui.vocabApply.dataset.busy = '1';
    updateVocabulary('Applying…');
    let note;
    try {
      const res = await fetch(`/rooms/${encodeURIComponent(s.room)}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${s.token}` },
        body: JSON.stringify({ vocabulary: terms, replacements }),
      });
      const body = await res.text().catch(() => '');
      if (res.ok) {
        // The list as the room now has it: one of each term, however it was typed.
        if (session === s) {
          ui.vocabulary.value = terms.join(', ');
          ui.replacements.value = replacementLines(replacements);
          delete ui.vocabulary.dataset.edited;
          delete ui.replacements.dataset.edited;
        }
        note = wordsNote(terms.length, Object.keys(replacements).length);
      } else {
        // The server's own words: a 404 is a room that was never created, not an old server.
        const { message } = errorOf(body);
        if (message) note = `The vocabulary was not changed: ${message}`;
        else if (res.status === 405) note = 'This server cannot change a room\'s vocabulary while it runs (it needs a newer Nova Voice).';
        else note = `The server did not take the vocabulary (HTTP ${res.status}).`;
      }
    } catch {
      note = 'Cannot reach the Nova Voice server: the vocabulary was not changed.';
    }
    delete ui.vocabApply.dataset.busy;
    if (session !== s) return;
    ui.vocabHint.dataset.result = '1';
    updateVocabulary(note);
  }

  // The server's word that the room's settings changed (whoever changed them).
  function vocabularyApplied(m) {
    if (!Array.isArray(m.changed) || !m.changed.some((c) => c === 'vocabulary' || c === 'replacements')) return;
    ui.vocabHint.dataset.result = '1';
    updateVocabulary(wordsNote(Number(m.vocabulary) || 0, Number(m.replacements) || 0));
  }

  // What the room hears and shows now: said the same after our Apply and after the server's
  // settings message (whichever comes last, the words are the same).
  function wordsNote(terms, swaps) {
    const heard = terms ? `The room now listens for ${terms} ${terms === 1 ? 'term' : 'terms'}` : 'The room has no vocabulary';
    const shown = swaps ? ` and shows ${swaps} ${swaps === 1 ? 'replacement' : 'replacements'}` : '';
    return `${heard}${shown}, from the next sentence on.`;
  }

  // ---- Dictation: finals typed at the cursor of an editable text, partials shown below it ----

  const PUNCT = '.,;:!?…';
  // What Whisper does not write: said as a sentence of their own ("New line."), in the
  // language the caption is in; English ones are understood in every language.
  const COMMANDS = {
    en: [['new[\\s-]?paragraph', '\n\n'], ['new[\\s-]?line', '\n']],
    es: [['nuevo\\s+p[aá]rrafo', '\n\n'], ['nueva\\s+l[ií]nea', '\n']],
    de: [['neuer\\s+absatz', '\n\n'], ['neue\\s+zeile', '\n']],
    fr: [['nouveau\\s+paragraphe', '\n\n'], ['nouvelle\\s+ligne', '\n'], ['[àa]\\s+la\\s+ligne', '\n']],
  };

  /** A final's text as pieces: {text} to type, {command: "\n"} to insert as it stands. */
  function dictationPieces(text, lang) {
    const code = String(lang || 'en').toLowerCase().split(/[-_]/)[0];
    const list = [...(COMMANDS[code] || []), ...(code === 'en' ? [] : COMMANDS.en)];
    const alt = list.map(([p], i) => `(?<c${i}>${p})`).join('|');
    // A command stands between punctuation (or the ends of the text): "a new line of shoes"
    // is words, "Thanks. New line." is a line break.
    const re = new RegExp(`(?<=^|[${PUNCT}])\\s*[¡¿]?(?:${alt})\\s*(?:[${PUNCT}]+|$)`, 'giu');
    const pieces = [];
    const words = (from, to) => {
      const t = text.slice(from, to).trim();
      if (t) pieces.push({ text: t });
    };
    let at = 0;
    for (const m of String(text).matchAll(re)) {
      words(at, m.index);
      const i = list.findIndex((_, k) => m.groups[`c${k}`] !== undefined);
      pieces.push({ command: list[i][1] });
      at = m.index + m[0].length;
    }
    words(at, text.length);
    return pieces;
  }

  const CLOSING = /^[,.;:!?…)\]}»”’]/;

  /** Type ``pieces`` at the text area's cursor (replacing a selection), spaced like prose. */
  function typeAtCursor(ta, pieces) {
    const start = ta.selectionStart ?? ta.value.length;
    const end = ta.selectionEnd ?? start;
    let prev = ta.value.slice(0, start).slice(-1);
    let out = '';
    let afterBreak = false;
    for (const p of pieces) {
      if (p.command) {
        out += p.command;
        prev = '\n';
        afterBreak = true;
        continue;
      }
      let t = p.text.trim();
      if (!t) continue;
      if (afterBreak) t = t.charAt(0).toLocaleUpperCase() + t.slice(1);
      if (prev && !/\s/.test(prev) && !CLOSING.test(t)) out += ' ';
      out += t;
      prev = t.slice(-1);
      afterBreak = false;
    }
    if (!out) return;
    ta.setRangeText(out, start, end, 'end');
    // Words typed before text that follows get a space between, the cursor staying before it.
    const next = ta.value.charAt(ta.selectionEnd);
    if (next && !/\s/.test(next) && !CLOSING.test(next) && !/\s$/.test(out)) {
      ta.setRangeText(' ', ta.selectionEnd, ta.selectionEnd, 'start');
    }
    remember(STORE.draft, ta.value);
  }

  const dictation = {
    typed: new Set(), // segments already typed: a replayed final is never typed twice
    partials: new Map(),
    reset() { this.typed.clear(); this.clearPartials(); },
    clearPartials() { this.partials.clear(); this.render(); },
    caption(msg, s) {
      if (mode !== 'dictation') return;
      // Another speaker's words (a shared room) are theirs, not this speaker's text: the
      // server names this session's own captions in the WHIP answer (Nova-Publisher).
      if (s.publisher && msg.publisher && msg.publisher !== s.publisher) return;
      if (!s.publisher && s.speaker && msg.speaker && msg.speaker !== s.speaker) return;
      const key = window.NovaCaptionView.key(msg);
      if (this.typed.has(key)) return;
      const text = String(msg.text ?? '').trim();
      if (msg.final) {
        this.partials.delete(key);
        this.typed.add(key);
        if (text) typeAtCursor(ui.dict, dictationPieces(text, msg.lang));
      } else if (text) {
        this.partials.set(key, text);
      } else {
        this.partials.delete(key);
      }
      this.render();
    },
    render() { ui.dictPartial.textContent = [...this.partials.values()].join(' '); },
  };

  function setMode(next) {
    mode = next === 'dictation' ? 'dictation' : 'captions';
    for (const r of document.querySelectorAll('input[name="mode"]')) r.checked = r.value === mode;
    ui.dictBox.hidden = mode !== 'dictation';
    ui.logs.hidden = mode === 'dictation';
    ui.watchRow.hidden = mode === 'dictation' || ui.watch.options.length < 2;
    if (mode === 'dictation' && watcher) { ui.watch.value = ''; watch(''); }
    document.body.dataset.mode = mode;
    remember(STORE.mode, mode);
  }

  async function copyText(button, text, select) {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      select();
      document.execCommand('copy'); // plain http pages have no async clipboard
    }
    const label = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  function downloadDictation() {
    const blob = new Blob([ui.dict.value], { type: 'text/plain;charset=utf-8' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    const day = new Date().toISOString().slice(0, 10);
    a.download = `${ui.room.value.trim() || 'dictation'}-${day}.txt`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  ui.form.addEventListener('submit', (e) => { e.preventDefault(); share(); });
  ui.stop.addEventListener('click', () => { stop(); });
  ui.watch.addEventListener('change', () => watch(ui.watch.value));
  ui.errorAction.addEventListener('click', () => {
    const run = errorAction;
    clearError();
    if (run) run();
  });
  ui.errorOther.addEventListener('click', () => {
    const run = errorOther;
    clearError();
    if (run) run();
  });
  for (const field of [ui.room, ui.token, ui.speaker]) {
    field.addEventListener('input', () => field.removeAttribute('aria-invalid'));
  }
  ui.speaker.addEventListener('change', () => remember(STORE.speaker, ui.speaker.value.trim()));
  for (const r of document.querySelectorAll('input[name="mode"]')) {
    r.addEventListener('change', () => { if (r.checked) setMode(r.value); });
  }
  ui.vocabulary.addEventListener('input', () => { ui.vocabulary.dataset.edited = '1'; });
  ui.replacements.addEventListener('input', () => { ui.replacements.dataset.edited = '1'; });
  ui.vocabApply.addEventListener('click', () => { applyVocabulary(); });
  ui.dict.addEventListener('input', () => remember(STORE.draft, ui.dict.value));
  ui.dictCopy.addEventListener('click', () => copyText(ui.dictCopy, ui.dict.value, () => ui.dict.select()));
  ui.dictDownload.addEventListener('click', downloadDictation);
  window.addEventListener('pagehide', () => {
    if (!session) return;
    deleteSession(session.location);
    release(session);
    session = null;
  });

  const params = new URLSearchParams(window.location.search);
  const fromUrl = params.get('room');
  if (fromUrl) ui.room.value = fromUrl;
  ui.speaker.value = recall(STORE.speaker);
  ui.dict.value = recall(STORE.draft);
  setMode(params.get('mode') || recall(STORE.mode) || 'captions');
  setState('idle');
  setBusy(false);

  window.novaCapture = {
    state: () => state,
    /** The final lines shown now, or those of ``lang`` ('' the spoken language). */
    finals: (lang) => (lang === undefined ? shownView() : viewFor(lang).view).finals(),
    partial: () => shownView().partial(),
    watching: () => (watcher ? ui.watch.value : ''),
    voice: () => voice,
    mode: () => mode,
    outputs: () => outputs.outputs,
    dictationPieces,
  };
})();

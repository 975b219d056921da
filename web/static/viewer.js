// NovaViewer: receive a room's captions over a WebRTC data channel, reconnecting by itself; where
// WebRTC cannot connect (a proxy or a firewall blocks it), over the plain HTTP feed instead
// (Server-Sent Events, /rooms/{room}/events). Shared by the OBS overlay and the embeddable
// widget (served inside /widget.js).
(function (root) {
  "use strict";

  // The server sends every listener a status at least twice a second; this long without a
  // message means the server or the path to it is gone, long before ICE would say so.
  const STALE_MS = 2500;
  // A data channel not open this long after an attempt starts: WebRTC is blocked on this path,
  // and the HTTP feed takes over (it carries the same messages).
  const FALLBACK_MS = 6000;

  function waitForIce(pc, ms) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(done, ms); // a slow STUN/TURN server must not hold the captions back
    });
  }

  /** ICE servers (with short-lived TURN credentials) from the Nova Voice server. A room's own
   * /rooms/{room}/ice answers pages on every origin (an embedding site gets an empty list where
   * the server keeps TURN for its own pages and --allow-origin), so no console error; plain /ice
   * is for the server's own pages. */
  async function iceServers(server, token, room) {
    try {
      const q = new URLSearchParams();
      if (token) q.set("token", token);
      const path = room ? "/rooms/" + encodeURIComponent(room) + "/ice" : "/ice";
      const r = await fetch(server + path + (q.toString() ? "?" + q : ""), { cache: "no-store" });
      if (r.ok) return (await r.json()).iceServers || [];
    } catch (e) { /* no /ice: plain host candidates are enough on a LAN */ }
    return [];
  }

  class NovaViewer {
    constructor(opts) {
      this.server = (opts.server || "").replace(/\/$/, "");
      this.room = opts.room;
      this.lang = opts.lang || "";
      this.token = opts.token || "";
      this.backlog = opts.backlog; // seconds of recent finals to replay on (re)connect
      this.onMessage = opts.onMessage || (() => {});
      this.onState = opts.onState || (() => {});
      // Called before each (re)connection's first message: the server replays its recent
      // captions to every new viewer, and a restarted server numbers segments afresh.
      this.onConnect = opts.onConnect || (() => {});
      this.pc = null;
      this.attempt = 0;
      this.timer = null;
      this.watchdog = null;
      this.fallbackTimer = null;
      this.feed = null;
      this.stopped = false;
      this.transport = "webrtc"; // "sse" once the HTTP feed took over
      this.opened = false; // whether a data channel ever opened: then WebRTC works on this path
      this.onTransport = opts.onTransport || (() => {});
    }

    start() { this.stopped = false; this.connect(); return this; }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      clearTimeout(this.watchdog);
      clearTimeout(this.fallbackTimer);
      if (this.pc) this.pc.close();
      if (this.feed) this.feed.close();
      this.pc = null;
      this.feed = null;
      this.onState("stopped");
    }

    query() {
      const q = new URLSearchParams();
      if (this.lang) q.set("lang", this.lang);
      if (this.backlog !== undefined) q.set("backlog", String(this.backlog));
      return q;
    }

    // The HTTP feed: an EventSource reconnects by itself and resumes after the last caption it
    // had (Last-Event-ID), so only a brand-new feed replays (and so clears the view first).
    useFeed(reason) {
      if (this.stopped || this.feed) return;
      clearTimeout(this.fallbackTimer);
      clearTimeout(this.timer);
      if (this.pc) { const pc = this.pc; this.pc = null; pc.close(); }
      this.transport = "sse";
      this.onTransport("sse");
      console.info("Nova Voice captions: using the HTTP feed (Server-Sent Events): " + reason);
      const q = this.query();
      if (this.token) q.set("token", this.token); // EventSource sends no headers: the token rides the URL
      const feed = new EventSource(this.server + "/rooms/" + encodeURIComponent(this.room) + "/events?" + q);
      this.feed = feed;
      let first = true;
      feed.onopen = () => { this.attempt = 0; this.onState("live"); };
      feed.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (first) { first = false; this.onConnect(); }
        this.onMessage(msg);
      };
      feed.onerror = () => { if (feed.readyState !== EventSource.OPEN) this.onState("reconnecting"); };
    }

    alive(pc) {
      clearTimeout(this.watchdog);
      this.watchdog = setTimeout(() => this.retry(pc), STALE_MS);
    }

    async connect() {
      clearTimeout(this.timer);
      if (this.stopped || this.feed) return;
      this.onState(this.attempt ? "reconnecting" : "connecting");
      if (typeof RTCPeerConnection === "undefined") return this.useFeed("this browser has no WebRTC");
      const pc = new RTCPeerConnection({ iceServers: await iceServers(this.server, this.token, this.room) });
      this.pc = pc;
      clearTimeout(this.fallbackTimer);
      this.fallbackTimer = setTimeout(() => {
        if (pc === this.pc && dc.readyState !== "open") this.useFeed("WebRTC did not connect");
      }, FALLBACK_MS);
      const dc = pc.createDataChannel("captions");
      let first = true;
      dc.onmessage = (ev) => {
        if (pc !== this.pc) return;
        this.alive(pc);
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (first) { first = false; this.onConnect(); }
        this.onMessage(msg);
      };
      dc.onopen = () => {
        clearTimeout(this.fallbackTimer);
        this.attempt = 0;
        this.opened = true;
        this.alive(pc);
        this.onState("live");
        this.onTransport("webrtc");
        console.info("Nova Voice captions: using a WebRTC data channel");
      };
      dc.onclose = () => this.retry(pc);
      pc.onconnectionstatechange = () => {
        if (["failed", "disconnected", "closed"].includes(pc.connectionState)) this.retry(pc);
      };
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await waitForIce(pc, 2000);
        const q = this.query();
        const qs = q.toString() ? "?" + q.toString() : "";
        const url = this.server + "/rooms/" + encodeURIComponent(this.room) + "/viewers" + qs;
        const headers = { "Content-Type": "application/json" };
        if (this.token) headers.Authorization = "Bearer " + this.token;
        const r = await fetch(url, { method: "POST", headers, body: JSON.stringify({ sdp: pc.localDescription.sdp }) });
        if (!r.ok) throw new Error("viewer signaling answered " + r.status);
        const answer = await r.json();
        await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      } catch (e) {
        this.retry(pc);
      }
    }

    // Exponential backoff with jitter, so that a restarted server is not stormed by its overlays;
    // capped low, since a viewer opened before its stream must go live soon after it starts.
    retry(pc) {
      if (this.stopped || pc !== this.pc) return;
      clearTimeout(this.watchdog);
      this.pc = null;
      pc.close();
      this.onState("reconnecting");
      if (!this.opened && this.attempt >= 2) return this.useFeed("WebRTC failed " + (this.attempt + 1) + " times");
      const delay = Math.min(5000, 500 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
      this.attempt += 1;
      this.timer = setTimeout(() => this.connect(), delay);
    }
  }

  /** A room's voice-over in one language at a time, over WHEP (POST /whep/{room}?lang=), into
   * an <audio> element of its own. Silent until play() is called from a click: browsers allow
   * sound only after the reader's gesture, so the page never starts speaking by itself. */
  class NovaVoice {
    constructor(opts) {
      this.server = (opts.server || "").replace(/\/$/, "");
      this.room = opts.room;
      this.token = opts.token || "";
      this.onState = opts.onState || (() => {});
      this.audio = document.createElement("audio");
      this.audio.className = "nova-voice";
      this.audio.muted = true; // muted until the reader asks for a language
      this.audio.autoplay = true;
      this.lang = "";
      this.pc = null;
      this.location = null;
    }

    async play(lang) {
      await this.stop();
      this.lang = lang;
      this.onState("connecting", lang);
      const pc = new RTCPeerConnection({ iceServers: await iceServers(this.server, this.token, this.room) });
      this.pc = pc;
      pc.addTransceiver("audio", { direction: "recvonly" });
      pc.ontrack = (ev) => {
        if (pc !== this.pc) return;
        this.audio.srcObject = new MediaStream([ev.track]);
        this.audio.muted = false;
        this.audio.play().catch(() => this.onState("blocked", lang));
      };
      pc.onconnectionstatechange = () => {
        if (pc !== this.pc) return;
        if (pc.connectionState === "connected") this.onState("playing", lang);
        if (["failed", "closed"].includes(pc.connectionState)) this.onState("stopped", lang);
      };
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await waitForIce(pc, 2000);
        const headers = { "Content-Type": "application/sdp" };
        if (this.token) headers.Authorization = "Bearer " + this.token;
        const url = this.server + "/whep/" + encodeURIComponent(this.room) + "?lang=" + encodeURIComponent(lang);
        const r = await fetch(url, { method: "POST", headers, body: pc.localDescription.sdp });
        if (r.status !== 201) throw new Error("WHEP answered " + r.status);
        const location = r.headers.get("Location");
        this.location = location ? new URL(location, new URL(url, document.baseURI)).href : null;
        if (pc !== this.pc) return;
        await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
      } catch (e) {
        if (pc === this.pc) { this.pc = null; pc.close(); this.onState("stopped", lang); }
        console.info("Nova Voice: the " + lang + " voice could not start: " + e.message);
      }
    }

    async stop() {
      const pc = this.pc;
      const location = this.location;
      this.pc = null;
      this.location = null;
      this.audio.muted = true;
      this.audio.srcObject = null;
      if (pc) pc.close();
      if (location) fetch(location, { method: "DELETE", headers: this.token ? { Authorization: "Bearer " + this.token } : {} }).catch(() => {});
      if (this.lang) this.onState("stopped", this.lang);
      this.lang = "";
    }
  }

  /** "Listen" buttons, one per language, in ``container``: a click plays that language's voice
   * (and stops another), a second click mutes it. Returns the NovaVoice. */
  NovaVoice.control = function (container, opts) {
    const voice = new NovaVoice(opts);
    const box = document.createElement("div");
    box.className = "nova-listen";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Listen to the captions");
    const buttons = new Map();
    for (const lang of opts.langs || []) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.lang = lang;
      b.setAttribute("aria-pressed", "false");
      b.textContent = "Listen " + lang.toUpperCase();
      b.title = "Hear the captions spoken in " + lang;
      b.addEventListener("click", () => (voice.lang === lang ? voice.stop() : voice.play(lang)));
      buttons.set(lang, b);
      box.appendChild(b);
    }
    const onState = opts.onState || (() => {});
    voice.onState = (state, lang) => {
      for (const [l, b] of buttons) {
        const on = l === voice.lang && state !== "stopped";
        b.setAttribute("aria-pressed", String(on));
        b.dataset.state = l === lang ? state : "stopped";
        b.textContent = (on ? "Listening " : "Listen ") + l.toUpperCase();
      }
      onState(state, lang);
    };
    box.appendChild(voice.audio);
    container.appendChild(box);
    voice.box = box;
    return voice;
  };

  NovaViewer.iceServers = iceServers;
  root.NovaViewer = NovaViewer;
  root.NovaVoice = NovaVoice;
})(typeof window !== "undefined" ? window : this);

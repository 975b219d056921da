// NovaViewer: receive a room's captions over a WebRTC data channel, reconnecting by itself.
// Shared by the OBS overlay and the embeddable widget (served inside /widget.js).
(function (root) {
  "use strict";

  // The server sends every listener a status at least twice a second; this long without a
  // message means the server or the path to it is gone, long before ICE would say so.
  const STALE_MS = 2500;

  function waitForIce(pc, ms) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(done, ms); // a slow STUN/TURN server must not hold the captions back
    });
  }

  /** ICE servers (with short-lived TURN credentials) from the Nova Voice server's /ice. */
  async function iceServers(server, token, room) {
    try {
      const q = new URLSearchParams();
      if (token) q.set("token", token);
      if (room) q.set("room", room); // a room's own view token opens /ice for that room
      const r = await fetch(server + "/ice" + (q.toString() ? "?" + q : ""));
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
      this.stopped = false;
    }

    start() { this.stopped = false; this.connect(); return this; }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      clearTimeout(this.watchdog);
      if (this.pc) this.pc.close();
      this.pc = null;
      this.onState("stopped");
    }

    alive(pc) {
      clearTimeout(this.watchdog);
      this.watchdog = setTimeout(() => this.retry(pc), STALE_MS);
    }

    async connect() {
      clearTimeout(this.timer);
      if (this.stopped) return;
      this.onState(this.attempt ? "reconnecting" : "connecting");
      const pc = new RTCPeerConnection({ iceServers: await iceServers(this.server, this.token, this.room) });
      this.pc = pc;
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
      dc.onopen = () => { this.attempt = 0; this.alive(pc); this.onState("live"); };
      dc.onclose = () => this.retry(pc);
      pc.onconnectionstatechange = () => {
        if (["failed", "disconnected", "closed"].includes(pc.connectionState)) this.retry(pc);
      };
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await waitForIce(pc, 2000);
        const q = new URLSearchParams();
        if (this.lang) q.set("lang", this.lang);
        if (this.backlog !== undefined) q.set("backlog", String(this.backlog));
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
      const delay = Math.min(5000, 500 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
      this.attempt += 1;
      this.timer = setTimeout(() => this.connect(), delay);
    }
  }

  NovaViewer.iceServers = iceServers;
  root.NovaViewer = NovaViewer;
})(typeof window !== "undefined" ? window : this);

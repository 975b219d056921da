// NovaViewer: receive a room's captions over a WebRTC data channel, reconnecting by itself.
// Shared by the OBS overlay and the embeddable widget (served inside /widget.js).
(function (root) {
  "use strict";

  function waitForIce(pc, ms) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(done, ms); // a slow STUN/TURN server must not hold the captions back
    });
  }

  class NovaViewer {
    constructor(opts) {
      this.server = (opts.server || "").replace(/\/$/, "");
      this.room = opts.room;
      this.lang = opts.lang || "";
      // A private room's (or server's) view token: sent as a Bearer header, never in a URL.
      this.token = opts.token || "";
      this.onMessage = opts.onMessage || (() => {});
      this.onState = opts.onState || (() => {});
      // Called before each (re)connection's first message: the server replays its recent
      // captions to every new viewer, and a restarted server numbers segments afresh.
      this.onConnect = opts.onConnect || (() => {});
      this.pc = null;
      this.attempt = 0;
      this.timer = null;
      this.stopped = false;
    }

    start() { this.stopped = false; this.connect(); return this; }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.pc) this.pc.close();
      this.pc = null;
      this.onState("stopped");
    }

    auth() {
      return this.token ? { Authorization: "Bearer " + this.token } : {};
    }

    async iceServers() {
      try {
        const r = await fetch(this.server + "/ice?room=" + encodeURIComponent(this.room), { headers: this.auth() });
        if (r.ok) return (await r.json()).iceServers || [];
      } catch (e) { /* no /ice: plain host candidates are enough on a LAN */ }
      return [];
    }

    async connect() {
      clearTimeout(this.timer);
      if (this.stopped) return;
      this.onState("connecting");
      const pc = new RTCPeerConnection({ iceServers: await this.iceServers() });
      this.pc = pc;
      const dc = pc.createDataChannel("captions");
      let first = true;
      dc.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (first) { first = false; this.onConnect(); }
        this.onMessage(msg);
      };
      dc.onopen = () => { this.attempt = 0; this.onState("live"); };
      dc.onclose = () => this.retry(pc);
      pc.onconnectionstatechange = () => {
        if (["failed", "disconnected", "closed"].includes(pc.connectionState)) this.retry(pc);
      };
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await waitForIce(pc, 2000);
        const q = this.lang ? "?lang=" + encodeURIComponent(this.lang) : "";
        const url = this.server + "/rooms/" + encodeURIComponent(this.room) + "/viewers" + q;
        const r = await fetch(url, {
          method: "POST",
          headers: Object.assign({ "Content-Type": "application/json" }, this.auth()),
          body: JSON.stringify({ sdp: pc.localDescription.sdp }),
        });
        if (!r.ok) throw new Error("viewer signaling answered " + r.status);
        const answer = await r.json();
        await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      } catch (e) {
        this.retry(pc);
      }
    }

    // Exponential backoff with jitter, so that a restarted server is not stormed by its overlays.
    retry(pc) {
      if (this.stopped || pc !== this.pc) return;
      this.pc = null;
      pc.close();
      this.onState("reconnecting");
      const delay = Math.min(15000, 500 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
      this.attempt += 1;
      this.timer = setTimeout(() => this.connect(), delay);
    }
  }

  root.NovaViewer = NovaViewer;
})(typeof window !== "undefined" ? window : this);

// NovaCaptionView: the one renderer of caption messages (server/messages.py), used by the
// capture page (a scrolling log), the OBS overlay and the widget (the last few lines, fading).
(function (root) {
  "use strict";

  // Remembering every closed segment forever would grow without bound on a long stream.
  const CLOSED_MEMORY = 1000;
  // A few pixels of slack: fractional layout sizes rarely land exactly on the bottom.
  const BOTTOM_SLACK = 8;
  const FADE_OUT_MS = 600;

  // How many speaker colours lines.css and capture.css define (data-voice="0".."5").
  const VOICES = 6;
  // A final stays up at least this long (or its fade, if shorter), even when newer finals come
  // in: two speakers finishing sentences 1.2-1.5 s apart pushed a line off the overlay within
  // 1.5-2.8 s, before anyone could read it. Past twice ``lines`` finals the oldest goes anyway.
  const READ_MS = 4500;

  class NovaCaptionView {
    /**
     * @param {HTMLElement} container  receives one .line element per segment
     * @param {{lines?: number|string, fade?: number|string, lang?: string, names?: string,
     *          onStatus?: Function, onError?: Function}} [opts]
     *   lines: how many final lines to keep (0: all, a scrolling log); the partial lines of the
     *   speakers talking now come on top of them and never push a final out, and a final stays
     *   at least READ_MS (or its fade) before a newer final replaces it; fade: seconds a final
     *   stays (0: until pushed out); names: "auto" (the default: a speaker's name before their
     *   lines once more than one person has spoken), "always" or "never". The server sends a
     *   viewer only the language it asked for (normalised: es-MX is served as es), so the view
     *   does not filter by language.
     */
    constructor(container, opts = {}) {
      this.el = container;
      this.maxLines = Math.max(0, Number(opts.lines ?? opts.maxLines) || 0);
      this.fade = Math.max(0, Number(opts.fade) || 0);
      this.names = ["always", "never"].includes(opts.names) ? opts.names : "auto";
      this.onStatus = opts.onStatus || null;
      this.onError = opts.onError || null;
      this.listeners = [];
      this.lines = new Map(); // publisher:segment -> element
      this.closed = new Set(); // keys of segments whose final has arrived
      this.people = new Map(); // who has spoken (a name, else a publisher) -> colour index
    }

    /** Call ``fn(message)`` for every caption message applied. */
    on(fn) { this.listeners.push(fn); }

    /** Apply one message (an object or its JSON text). Returns whether it was understood. */
    apply(message) {
      let msg = message;
      if (typeof msg === "string") {
        try { msg = JSON.parse(msg); } catch (e) { return false; }
      }
      if (!msg || typeof msg !== "object") return false;
      switch (msg.type) {
        case "caption":
          this.listeners.forEach((fn) => fn(msg));
          this.caption(msg);
          return true;
        case "status": if (this.onStatus) this.onStatus(msg); return true;
        case "error": if (this.onError) this.onError(msg); return true;
        default: return false;
      }
    }

    // Each publisher's segments are its own: two speakers' partials never share a line.
    static key(msg) {
      const seg = Number(msg.segment);
      return msg.publisher ? String(msg.publisher) + ":" + seg : String(seg);
    }

    showNames() {
      return this.names === "always" || (this.names === "auto" && this.people.size > 1);
    }

    caption(msg) {
      const key = NovaCaptionView.key(msg);
      // A partial that trails its own final (a replay after reconnecting) must not reopen the line.
      if (this.closed.has(key)) return;
      const text = String(msg.text ?? "").trim();
      // Decide before changing the DOM: afterwards the new height hides where the reader was.
      const stick = this.atBottom();
      if (msg.final) {
        if (!this.closed.has(key) && this.lines.has(key)) this.lines.get(key)._finalAt = performance.now();
        this.closed.add(key);
        if (this.closed.size > CLOSED_MEMORY) this.closed.delete(this.closed.values().next().value);
      }
      if (!text) {
        this.remove(key);
      } else {
        const who = msg.speaker ? String(msg.speaker) : msg.publisher ? String(msg.publisher) : "";
        const named = this.showNames();
        if (who && !this.people.has(who)) this.people.set(who, this.people.size % VOICES);
        const line = this.lines.get(key) || this.insert(key, Number(msg.segment));
        if (msg.final && !line._finalAt) line._finalAt = performance.now();
        this.fill(line, msg, text);
        // The second person to speak: everyone's lines get their names, the earlier ones too.
        if (this.showNames() !== named) this.relabel();
        clearTimeout(line._fade);
        if (msg.final && this.fade > 0) {
          line._fade = setTimeout(() => {
            line.classList.add("gone");
            setTimeout(() => this.remove(key, line), FADE_OUT_MS);
          }, this.fade * 1000);
        }
      }
      this.trim();
      if (stick) this.el.scrollTop = this.el.scrollHeight;
    }

    // A partial shows the words that will not change apart from the ones still being worked out.
    // Names and words are set as text, never parsed as HTML: what a speaker calls themselves
    // and what Whisper hears stay inert on every page that shows them.
    fill(line, msg, text) {
      line.className = "line " + (msg.final ? "final" : "partial");
      const body = document.createElement("span");
      body.className = "text";
      const stable = msg.final ? "" : String(msg.stable || "").trim();
      if (stable && text.startsWith(stable) && stable.length < text.length) {
        const firm = document.createElement("span");
        firm.className = "stable";
        firm.textContent = stable;
        body.replaceChildren(firm, document.createTextNode(text.slice(stable.length)));
      } else {
        body.textContent = text;
      }
      if (msg.speaker) line.dataset.speaker = String(msg.speaker);
      else delete line.dataset.speaker;
      const who = msg.speaker ? String(msg.speaker) : msg.publisher ? String(msg.publisher) : "";
      if (who && this.people.has(who)) line.dataset.voice = String(this.people.get(who));
      line.replaceChildren(body);
      this.label(line);
      // Screen readers would re-announce every revision of a partial; let them read finals only.
      if (msg.final) line.removeAttribute("aria-hidden");
      else line.setAttribute("aria-hidden", "true");
      if (msg.lang) line.lang = msg.lang;
      if (typeof msg.start === "number") line.dataset.start = msg.start;
      if (typeof msg.end === "number") line.dataset.end = msg.end;
    }

    // The speaker's name before the line's words, while names are shown.
    label(line) {
      const old = line.querySelector(":scope > .speaker");
      const name = this.showNames() ? line.dataset.speaker : "";
      if (!name) { if (old) old.remove(); return; }
      const tag = old || document.createElement("span");
      tag.className = "speaker";
      tag.textContent = name;
      if (!old) line.prepend(tag);
    }

    relabel() { for (const line of this.lines.values()) this.label(line); }

    atBottom() {
      const c = this.el;
      return c.scrollHeight - c.scrollTop - c.clientHeight <= BOTTOM_SLACK;
    }

    // Segments are numbered in speaking order, but with several publishers a final can arrive
    // after the next segment's partial; keep lines in segment order regardless.
    insert(key, seg) {
      const line = document.createElement("div");
      line.dataset.segment = String(seg);
      line.dataset.key = key;
      let after = this.el.lastElementChild;
      while (after && Number(after.dataset.segment) > seg) after = after.previousElementSibling;
      if (after) after.after(line);
      else this.el.prepend(line);
      this.lines.set(key, line);
      return line;
    }

    remove(key, only) {
      const line = this.lines.get(key);
      if (!line || (only && line !== only)) return;
      clearTimeout(line._fade);
      line.remove();
      this.lines.delete(key);
    }

    // ``lines`` counts finals: the speakers' partials never push one out (a partial removed
    // here would reappear out of place on its next update anyway). The oldest finals past
    // ``lines`` go once they have been up READ_MS (or their fade); until then they stay, up to
    // twice ``lines`` finals, and a timer comes back for them.
    trim() {
      if (!this.maxLines) return;
      clearTimeout(this._trimTimer);
      const finals = [...this.el.children].filter((l) => l.classList.contains("final"));
      let excess = finals.length - this.maxLines;
      if (excess <= 0) return;
      let forced = finals.length - 2 * this.maxLines;
      const hold = this.fade > 0 ? Math.min(READ_MS, this.fade * 1000) : READ_MS;
      const now = performance.now();
      let wait = Infinity;
      for (const line of finals.sort((a, b) => (a._finalAt || 0) - (b._finalAt || 0))) {
        if (excess <= 0) break;
        const shown = now - (line._finalAt || 0);
        if (shown >= hold || forced > 0) {
          this.remove(line.dataset.key);
          excess -= 1;
          forced -= 1;
        } else {
          wait = Math.min(wait, hold - shown);
        }
      }
      if (excess > 0 && wait < Infinity) this._trimTimer = setTimeout(() => this.trim(), wait + 20);
    }

    /** Forget everything shown: a new connection starts from what the server replays. */
    clear() {
      clearTimeout(this._trimTimer);
      for (const line of this.lines.values()) clearTimeout(line._fade);
      this.el.replaceChildren();
      this.lines.clear();
      this.closed.clear();
      this.people.clear();
    }

    /** Drop the partial lines only (their speaker is gone; their final may never come). */
    clearPartials() {
      for (const [key, line] of [...this.lines]) if (line.classList.contains("partial")) this.remove(key, line);
    }

    // The words of lines, without the speakers' names.
    static words(line) {
      const body = line.querySelector(":scope > .text");
      return (body || line).textContent;
    }

    finals() { return [...this.el.querySelectorAll(".final")].map(NovaCaptionView.words); }

    partial() { return [...this.el.querySelectorAll(".partial")].map(NovaCaptionView.words).join(" "); }

    texts() { return [...this.el.children].map(NovaCaptionView.words); }

    // Style options shared by the overlay (URL parameters) and the widget (data attributes),
    // applied as CSS custom properties: the CSSOM drops invalid values, so no option can inject CSS.
    // Readable over any video by default: an outline and a shadow unless switched off with 0.
    static applyStyle(el, o) {
      const px = (v) => (v && /^\d+(\.\d+)?$/.test(v) ? v + "px" : v);
      const set = (name, value) => { if (value) el.style.setProperty(name, value); };
      const off = (v) => v === "0" || v === "false" || v === "none" || v === 0 || v === false;
      set("--nova-font", o.font ? `${o.font}, ${FONT_STACK}` : "");
      set("--nova-size", px(o.size));
      set("--nova-color", o.color);
      set("--nova-align", o.align);
      set("--nova-max-width", px(o.maxWidth || o.max_width));
      const outlineColor = o.outlineColor || o.outline_color || "rgba(0,0,0,.85)";
      if (off(o.outline)) el.style.setProperty("--nova-outline", "0");
      else if (Number(o.outline) > 0) el.style.setProperty("--nova-outline", `${Number(o.outline)}px ${outlineColor}`);
      else if (o.outlineColor || o.outline_color) el.style.setProperty("--nova-outline", `2px ${outlineColor}`);
      if (off(o.shadow)) el.style.setProperty("--nova-shadow", "none");
      else if (o.shadow && !["1", "true", ""].includes(String(o.shadow))) set("--nova-shadow", o.shadow);
      if (o.bg) {
        el.style.setProperty("--nova-bg", o.bg);
        el.style.setProperty("--nova-bg-opacity", o.bgOpacity ?? o.bg_opacity ?? "0.6");
      }
      el.dataset.position = o.position === "top" ? "top" : "bottom";
    }
  }

  const FONT_STACK = 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Helvetica Neue", Arial, sans-serif';
  NovaCaptionView.FONT_STACK = FONT_STACK;
  root.NovaCaptionView = NovaCaptionView;
})(typeof window !== "undefined" ? window : this);

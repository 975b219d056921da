// NovaCaptionView: the one renderer of caption messages (server/messages.py), used by the
// capture page (a scrolling log), the OBS overlay and the widget (the last few lines, fading).
(function (root) {
  "use strict";

  // Remembering every closed segment forever would grow without bound on a long stream.
  const CLOSED_MEMORY = 1000;
  // A few pixels of slack: fractional layout sizes rarely land exactly on the bottom.
  const BOTTOM_SLACK = 8;
  const FADE_OUT_MS = 600;

  class NovaCaptionView {
    /**
     * @param {HTMLElement} container  receives one .line element per segment
     * @param {{lines?: number|string, fade?: number|string, lang?: string,
     *          onStatus?: Function, onError?: Function}} [opts]
     *   lines: how many lines to keep (0: all, a scrolling log); fade: seconds a final
     *   stays (0: until pushed out). The server sends a viewer only the language it asked
     *   for (normalised: es-MX is served as es), so the view does not filter by language.
     */
    constructor(container, opts = {}) {
      this.el = container;
      this.maxLines = Math.max(0, Number(opts.lines ?? opts.maxLines) || 0);
      this.fade = Math.max(0, Number(opts.fade) || 0);
      this.onStatus = opts.onStatus || null;
      this.onError = opts.onError || null;
      this.listeners = [];
      this.lines = new Map(); // segment -> element
      this.closed = new Set(); // segments whose final has arrived
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

    caption(msg) {
      const seg = Number(msg.segment);
      // A partial that trails its own final (a replay after reconnecting) must not reopen the line.
      if (this.closed.has(seg)) return;
      const text = String(msg.text ?? "").trim();
      // Decide before changing the DOM: afterwards the new height hides where the reader was.
      const stick = this.atBottom();
      if (msg.final) {
        this.closed.add(seg);
        if (this.closed.size > CLOSED_MEMORY) this.closed.delete(this.closed.values().next().value);
      }
      if (!text) {
        this.remove(seg);
      } else {
        const line = this.lines.get(seg) || this.insert(seg);
        this.fill(line, msg, text);
        clearTimeout(line._fade);
        if (msg.final && this.fade > 0) {
          line._fade = setTimeout(() => {
            line.classList.add("gone");
            setTimeout(() => this.remove(seg, line), FADE_OUT_MS);
          }, this.fade * 1000);
        }
      }
      this.trim();
      if (stick) this.el.scrollTop = this.el.scrollHeight;
    }

    // A partial shows the words that will not change apart from the ones still being worked out.
    fill(line, msg, text) {
      line.className = "line " + (msg.final ? "final" : "partial");
      const stable = msg.final ? "" : String(msg.stable || "").trim();
      if (stable && text.startsWith(stable) && stable.length < text.length) {
        const firm = document.createElement("span");
        firm.className = "stable";
        firm.textContent = stable;
        line.replaceChildren(firm, document.createTextNode(text.slice(stable.length)));
      } else {
        line.textContent = text;
      }
      // Screen readers would re-announce every revision of a partial; let them read finals only.
      if (msg.final) line.removeAttribute("aria-hidden");
      else line.setAttribute("aria-hidden", "true");
      if (msg.lang) line.lang = msg.lang;
      if (typeof msg.start === "number") line.dataset.start = msg.start;
      if (typeof msg.end === "number") line.dataset.end = msg.end;
    }

    atBottom() {
      const c = this.el;
      return c.scrollHeight - c.scrollTop - c.clientHeight <= BOTTOM_SLACK;
    }

    // Segments are numbered in speaking order, but with several publishers a final can arrive
    // after the next segment's partial; keep lines in segment order regardless.
    insert(seg) {
      const line = document.createElement("div");
      line.dataset.segment = String(seg);
      let after = this.el.lastElementChild;
      while (after && Number(after.dataset.segment) > seg) after = after.previousElementSibling;
      if (after) after.after(line);
      else this.el.prepend(line);
      this.lines.set(seg, line);
      return line;
    }

    remove(seg, only) {
      const line = this.lines.get(seg);
      if (!line || (only && line !== only)) return;
      clearTimeout(line._fade);
      line.remove();
      this.lines.delete(seg);
    }

    // Finals go first: a partial removed here would reappear out of place on its next update.
    trim() {
      if (!this.maxLines) return;
      let excess = this.lines.size - this.maxLines;
      for (const line of [...this.el.children]) {
        if (excess <= 0) break;
        if (line.classList.contains("final")) {
          this.remove(Number(line.dataset.segment));
          excess -= 1;
        }
      }
    }

    /** Forget everything shown: a new connection starts from what the server replays. */
    clear() {
      for (const line of this.lines.values()) clearTimeout(line._fade);
      this.el.replaceChildren();
      this.lines.clear();
      this.closed.clear();
    }

    /** Drop the partial lines only (their speaker is gone; their final may never come). */
    clearPartials() {
      for (const [seg, line] of [...this.lines]) if (line.classList.contains("partial")) this.remove(seg, line);
    }

    finals() { return [...this.el.querySelectorAll(".final")].map((e) => e.textContent); }

    partial() { return [...this.el.querySelectorAll(".partial")].map((e) => e.textContent).join(" "); }

    texts() { return [...this.el.children].map((e) => e.textContent); }

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

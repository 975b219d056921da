// NovaLines: the last few caption lines, partials provisional, old lines fading away.
// Used by the OBS overlay and the widget; works inside a Shadow DOM root.
(function (root) {
  "use strict";

  class NovaLines {
    constructor(container, opts) {
      this.el = container;
      this.maxLines = Math.max(1, Number(opts.lines) || 3);
      this.fade = Number(opts.fade) || 0; // seconds a final stays; 0: until pushed out
      this.lang = opts.lang || "";
      this.bySegment = new Map();
      this.listeners = [];
    }

    on(fn) { this.listeners.push(fn); }

    textOf(msg) {
      if (this.lang && msg.lang !== this.lang) {
        return (msg.translations && msg.translations[this.lang]) || "";
      }
      return msg.text || "";
    }

    apply(msg) {
      if (!msg || msg.type !== "caption") return;
      this.listeners.forEach((fn) => fn(msg));
      const text = this.textOf(msg);
      let line = this.bySegment.get(msg.segment);
      if (!text) {
        if (line && msg.final) this.remove(msg.segment, line);
        return;
      }
      if (!line) {
        line = document.createElement("div");
        line.className = "line";
        this.el.appendChild(line);
        this.bySegment.set(msg.segment, line);
      }
      line.textContent = text;
      line.classList.toggle("partial", !msg.final);
      line.classList.toggle("final", !!msg.final);
      clearTimeout(line._fade);
      if (msg.final && this.fade > 0) {
        line._fade = setTimeout(() => {
          line.classList.add("gone");
          setTimeout(() => this.remove(msg.segment, line), 600);
        }, this.fade * 1000);
      }
      while (this.el.children.length > this.maxLines) {
        const first = this.el.firstElementChild;
        for (const [seg, el] of this.bySegment) if (el === first) this.bySegment.delete(seg);
        first.remove();
      }
    }

    clear() {
      this.bySegment.clear();
      this.el.replaceChildren();
    }

    remove(segment, line) {
      if (this.bySegment.get(segment) === line) this.bySegment.delete(segment);
      line.remove();
    }

    texts() { return Array.from(this.el.children, (c) => c.textContent); }

    // Style options shared by the overlay (URL parameters) and the widget (data attributes),
    // applied as CSS custom properties: the CSSOM drops invalid values, so no option can inject CSS.
    static applyStyle(el, o) {
      const px = (v) => (v && /^\d+(\.\d+)?$/.test(v) ? v + "px" : v);
      const set = (name, value) => { if (value) el.style.setProperty(name, value); };
      set("--nova-font", o.font);
      set("--nova-size", px(o.size));
      set("--nova-color", o.color);
      set("--nova-align", o.align);
      set("--nova-max-width", px(o.maxWidth || o.max_width));
      const outline = Number(o.outline);
      if (outline > 0) {
        const c = o.outlineColor || o.outline_color || "black";
        el.style.setProperty("--nova-outline", `${outline}px ${c}`);
      }
      if (o.shadow !== undefined && o.shadow !== "0" && o.shadow !== "false") {
        set("--nova-shadow", o.shadow === "" || o.shadow === "1" || o.shadow === "true"
          ? "0 2px 6px rgba(0,0,0,.9)" : o.shadow);
      }
      if (o.bg) {
        const opacity = o.bgOpacity ?? o.bg_opacity ?? "0.6";
        el.style.setProperty("--nova-bg", o.bg);
        el.style.setProperty("--nova-bg-opacity", opacity);
      }
      el.dataset.position = o.position === "top" ? "top" : "bottom";
    }
  }

  root.NovaLines = NovaLines;
})(typeof window !== "undefined" ? window : this);

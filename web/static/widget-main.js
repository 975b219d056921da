// The embeddable widget: <script src="https://HOST/widget.js" data-room="demo" async></script>
// drops a caption box where the tag stands, inside a Shadow DOM so no CSS leaks either way.
// data-names="auto|always|never": speakers' names before their lines (auto: once two have spoken).
// Served by the server after viewer.js and captions.js, as one file.
(function (root) {
  "use strict";
  const script = document.currentScript;
  const origin = script && script.src ? new URL(script.src).origin : location.origin;

  // Inherited properties (font, colour, italics, spacing...) cross into a shadow root; "all:
  // initial" on the host stops the embedding page's styles at the box's edge.
  function styleText(server) {
    return `@import url("${server}/static/lines.css");
      :host { all: initial; display: block; contain: content; }
      .box { position: relative; overflow: hidden; min-height: 2.6em; height: var(--nova-height, auto);
             display: flex; flex-direction: column; justify-content: flex-end;
             background: var(--nova-box, #111c); border-radius: 8px; padding: 8px 12px;
             font-family: ${NovaCaptionView.FONT_STACK}; }
      .box[data-position="top"] { justify-content: flex-start; }
      .nova-captions { width: 100%; }`;
  }

  function mount(element, options) {
    const o = Object.assign({ server: origin, lines: 3, fade: 0, size: "20", outline: "0" }, options || {});
    const server = String(o.server).replace(/\/$/, "");
    const shadow = element.shadowRoot || element.attachShadow({ mode: "open" });
    shadow.replaceChildren();
    const style = document.createElement("style");
    style.textContent = styleText(server);
    const box = document.createElement("div");
    box.className = "box";
    box.setAttribute("part", "box");
    const captions = document.createElement("div");
    captions.className = "nova-captions";
    captions.setAttribute("aria-live", "polite");
    box.appendChild(captions);
    shadow.append(style, box);
    NovaCaptionView.applyStyle(box, o);
    if (o.height) box.style.setProperty("--nova-height", /^\d+$/.test(o.height) ? o.height + "px" : o.height);
    if (o.box) box.style.setProperty("--nova-box", o.box);
    const view = new NovaCaptionView(captions, o);
    // Custom rendering: listen for "caption" on the element (event.detail is the message).
    view.on((msg) => element.dispatchEvent(new CustomEvent("caption", { detail: msg })));
    const viewer = new NovaViewer({
      server, room: o.room, lang: o.lang, token: o.token,
      backlog: Number(o.fade) > 0 ? Number(o.fade) : undefined,
      onMessage: (m) => view.apply(m),
      onConnect: () => view.clear(),
      onState: (s) => { element.dataset.state = s; if (s !== "live") view.clear(); },
      onTransport: (t) => { element.dataset.transport = t; element.title = "captions over " + (t === "sse" ? "the HTTP feed" : "WebRTC"); },
    }).start();
    // data-voice="es,en": a Listen button per language above the captions (silent until clicked).
    const langs = String(o.voice || "").split(",").map((l) => l.trim()).filter(Boolean);
    const voice = langs.length ? NovaVoice.control(box, { server, room: o.room, token: o.token, langs }) : null;
    if (voice) box.insertBefore(voice.box, captions);
    return {
      element, view, viewer, voice,
      on(type, fn) { element.addEventListener(type, (e) => fn(e.detail)); return this; },
      stop() { viewer.stop(); if (voice) voice.stop(); },
    };
  }

  root.NovaCaptions = { mount, version: 2 };

  if (script && script.dataset.room) {
    const host = document.createElement("div");
    host.className = "nova-captions-widget";
    script.parentNode.insertBefore(host, script);
    const opts = Object.assign({}, script.dataset);
    if (!opts.server) opts.server = origin;
    root.NovaCaptions.last = mount(host, opts);
  }
})(window);

// Caption rendering shared by the capture page, the OBS overlay and the embeddable widget.
(() => {
  'use strict';

  // Remembering every closed segment forever would grow without bound on a long stream.
  const CLOSED_MEMORY = 1000;
  // A few pixels of slack: fractional layout sizes rarely land exactly on the bottom.
  const BOTTOM_SLACK = 8;

  class CaptionView {
    /**
     * @param {HTMLElement} container  element that receives one <p> per segment
     * @param {{maxLines?: number, onStatus?: Function, onError?: Function}} [options]
     */
    constructor(container, options = {}) {
      this.container = container;
      this.maxLines = options.maxLines || 0;
      this.onStatus = options.onStatus || null;
      this.onError = options.onError || null;
      this.lines = new Map(); // segment -> line element
      this.closed = new Set(); // segments whose final has arrived
    }

    /** Apply one message (an object or its JSON text). Returns whether it was understood. */
    apply(message) {
      let msg = message;
      if (typeof msg === 'string') {
        try { msg = JSON.parse(msg); } catch { return false; }
      }
      if (!msg || typeof msg !== 'object') return false;
      switch (msg.type) {
        case 'caption': this._caption(msg); return true;
        case 'status': if (this.onStatus) this.onStatus(msg); return true;
        case 'error': if (this.onError) this.onError(msg); return true;
        default: return false;
      }
    }

    /** Texts of the final lines, oldest first. */
    finals() {
      return [...this.container.querySelectorAll('.final')].map((el) => el.textContent);
    }

    /** Text still being worked out (normally one line; several when several people speak). */
    partial() {
      return [...this.container.querySelectorAll('.partial')].map((el) => el.textContent).join(' ');
    }

    clear() {
      this.container.replaceChildren();
      this.lines.clear();
      this.closed.clear();
    }

    _caption(msg) {
      const seg = Number(msg.segment);
      // A partial that trails its own final (a replay after reconnecting) must not reopen the line.
      if (this.closed.has(seg)) return;
      const text = String(msg.text ?? '').trim();
      // Decide before changing the DOM: afterwards the new height hides where the reader was.
      const stick = this._atBottom();

      if (msg.final) {
        this.closed.add(seg);
        if (this.closed.size > CLOSED_MEMORY) this.closed.delete(this.closed.values().next().value);
      }
      if (!text) {
        this._remove(seg);
      } else {
        const line = this.lines.get(seg) || this._insert(seg);
        line.textContent = text;
        line.className = msg.final ? 'final' : 'partial';
        // Screen readers would re-announce every revision of a partial; let them read finals only.
        if (msg.final) line.removeAttribute('aria-hidden');
        else line.setAttribute('aria-hidden', 'true');
        if (msg.lang) line.lang = msg.lang;
        if (typeof msg.start === 'number') line.dataset.start = msg.start;
        if (typeof msg.end === 'number') line.dataset.end = msg.end;
      }
      this._trim();
      if (stick) this.container.scrollTop = this.container.scrollHeight;
    }

    _atBottom() {
      const c = this.container;
      return c.scrollHeight - c.scrollTop - c.clientHeight <= BOTTOM_SLACK;
    }

    // Segments are numbered in speaking order, but with several publishers a final can arrive
    // after the next segment's partial; keep lines in segment order regardless.
    _insert(seg) {
      const line = document.createElement('p');
      line.dataset.segment = String(seg);
      let after = this.container.lastElementChild;
      while (after && Number(after.dataset.segment) > seg) after = after.previousElementSibling;
      if (after) after.after(line);
      else this.container.prepend(line);
      this.lines.set(seg, line);
      return line;
    }

    _remove(seg) {
      const line = this.lines.get(seg);
      if (line) line.remove();
      this.lines.delete(seg);
    }

    // Only finals are dropped: a partial removed here would reappear out of place on its next update.
    _trim() {
      if (!this.maxLines) return;
      let excess = this.lines.size - this.maxLines;
      for (const line of [...this.container.children]) {
        if (excess <= 0) break;
        if (line.classList.contains('final')) {
          this._remove(Number(line.dataset.segment));
          excess -= 1;
        }
      }
    }
  }

  window.NovaCaptionView = CaptionView;
})();

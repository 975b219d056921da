// The capture page's outputs panel: a room's YouTube, OBS and webhook outputs added, edited, tested and
// removed with its publish token (PATCH /rooms/{room} and POST /rooms/{room}/outputs/{id}/test),
// and how each is doing, live: from the publisher's status messages while sharing, else from
// GET /rooms/{room} every few seconds while the panel is open. Stream keys and passwords go to
// the server and never come back: an output is edited by its id, a blank field left unchanged.
(function (root) {
  'use strict';

  const POLL_MS = 2000;
  // Status messages carry the outputs twice a second while sharing; polling waits this long
  // after the last one before it takes over.
  const STATUS_FRESH_MS = 3000;
  const LABEL = { youtube: 'YouTube', obs: 'OBS', webhook: 'Webhook' };
  const STATE_TEXT = { connected: 'connected', retrying: 'retrying', idle: 'idle' };

  const $ = (id) => document.getElementById(id);

  function errorOf(text) {
    try {
      const j = JSON.parse(text);
      return { code: String((j && j.error) || ''), message: String((j && j.message) || '') };
    } catch {
      return { code: '', message: '' };
    }
  }

  function clock(iso) {
    if (!iso) return '';
    const at = new Date(iso);
    return Number.isNaN(at.getTime()) ? '' : at.toLocaleTimeString();
  }

  /** How an output is doing, in a line: what a streamer checks before going live. */
  function detail(o) {
    const counts = ` · ${o.sent || 0} sent · ${o.dropped || 0} dropped`;
    if (o.state === 'retrying') {
      return `retrying since ${clock(o.since)}: ${o.last_error || 'it keeps failing'}${counts}`;
    }
    if (o.state === 'connected') {
      const ok = o.last_ok ? `last caption OK at ${clock(o.last_ok)}` : `connected since ${clock(o.since)}`;
      return ok + counts;
    }
    if (o.state === 'idle') return `nothing sent yet${counts}`;
    return '';
  }

  class NovaOutputs {
    /** ``opts.room()`` and ``opts.token()``: the room and publish token in use now.
     *  ``opts.onCreateRoom(name)``: offered when the room does not exist yet. */
    constructor(opts) {
      this.room = opts.room;
      this.token = opts.token;
      this.onCreateRoom = opts.onCreateRoom || null;
      this.ui = {
        box: $('outputs'), badge: $('outputs-badge'), hint: $('outputs-hint'), list: $('output-list'),
        add: $('output-add'), form: $('output-form'), type: $('output-type'), url: $('output-url'),
        urlLabel: $('output-url-label'), password: $('output-password'), passwordRow: $('output-password-row'), passwordLabel: $('output-password-label'),
        viewRow: $('output-view-row'), view: $('output-view-token'), formHint: $('output-form-hint'),
        save: $('output-save'), cancel: $('output-cancel'),
      };
      this.outputs = [];
      this.editing = null; // the id of the output being edited; null while adding
      this.notes = new Map(); // id -> the result of its last Test
      this.lastStatus = 0;
      this.timer = 0;
      this.loadedFor = '';
      const ui = this.ui;
      ui.box.addEventListener('toggle', () => (ui.box.open ? this.start() : this.stop()));
      ui.add.addEventListener('click', () => this.openForm(null));
      ui.cancel.addEventListener('click', () => this.closeForm());
      ui.type.addEventListener('change', () => this.fitForm());
      ui.form.addEventListener('submit', (e) => { e.preventDefault(); this.submit(); });
      ui.list.addEventListener('click', (e) => {
        const button = e.target.closest('button[data-act]');
        const item = button && button.closest('li[data-id]');
        if (!item) return;
        const id = item.dataset.id;
        if (button.dataset.act === 'test') this.test(id, button);
        else if (button.dataset.act === 'edit') this.openForm(id);
        else if (button.dataset.act === 'remove') this.remove(id);
      });
    }

    open() { this.ui.box.open = true; this.ui.box.scrollIntoView({ block: 'nearest' }); }

    start() {
      this.refresh();
      clearInterval(this.timer);
      this.timer = setInterval(() => {
        if (Date.now() - this.lastStatus > STATUS_FRESH_MS) this.refresh();
      }, POLL_MS);
    }

    stop() { clearInterval(this.timer); this.timer = 0; }

    headers(json) {
      const h = {};
      const token = this.token();
      if (token) h.Authorization = `Bearer ${token}`;
      const view = this.ui.view.value.trim();
      if (view) h['Nova-View-Token'] = view;
      if (json) h['Content-Type'] = 'application/json';
      return h;
    }

    url(path = '') { return `/rooms/${encodeURIComponent(this.room())}${path}`; }

    hint(text, kind) {
      this.ui.hint.textContent = text;
      if (kind) this.ui.hint.dataset.kind = kind;
      else delete this.ui.hint.dataset.kind;
    }

    /** The outputs as the publisher's status message tells them (while sharing). */
    fromStatus(outputs) {
      this.lastStatus = Date.now();
      this.loadedFor = this.room();
      this.show(outputs);
    }

    async refresh() {
      const room = this.room();
      if (!room) { this.hint('Fill in the Room above.'); return; }
      let res;
      try {
        res = await fetch(this.url(), { headers: this.headers(false), cache: 'no-store' });
      } catch {
        this.hint('Cannot reach the Nova Voice server.', 'bad');
        return;
      }
      if (room !== this.room()) return; // the room changed while we asked
      const body = await res.text().catch(() => '');
      if (res.ok) {
        let info = {};
        try { info = JSON.parse(body); } catch { /* an empty answer: no outputs */ }
        this.loadedFor = room;
        this.show(Array.isArray(info.outputs) ? info.outputs : []);
        return;
      }
      this.show([]);
      if (res.status === 404) {
        this.hint(`There is no room "${room}" on this server yet (or it needs a token you have not given). Outputs belong to a room made with its own publish token.`, 'bad');
        this.offerCreate(room);
      } else {
        this.hint(errorOf(body).message || `The server did not show the room (HTTP ${res.status}).`, 'bad');
      }
    }

    offerCreate(room) {
      if (!this.onCreateRoom) return;
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = `Create "${room}"`;
      button.addEventListener('click', () => this.onCreateRoom(room));
      this.ui.hint.append(' ', button);
    }

    show(outputs) {
      this.outputs = outputs.filter((o) => o && typeof o === 'object' && o.id);
      const ui = this.ui;
      // Status messages come twice a second: the list is drawn again only when something shown
      // changed, so a button is never replaced under the pointer that is clicking it.
      const drawn = JSON.stringify([this.outputs.map(({ seconds, ...o }) => o), [...this.notes]]);
      if (drawn !== this.drawn) { this.drawn = drawn; this.draw(); }
      const failing = this.outputs.filter((o) => o.state === 'retrying').length;
      ui.badge.hidden = !this.outputs.length;
      ui.badge.textContent = failing ? `${this.outputs.length} · ${failing} failing` : String(this.outputs.length);
      ui.badge.dataset.kind = failing ? 'bad' : 'ok';
      if (!this.token()) {
        this.hint('To add or change outputs, paste the room\'s publish token above.');
      } else if (!this.outputs.length) {
        this.hint('No outputs yet.');
      } else {
        this.hint('');
      }
    }

    draw() {
      const items = this.outputs.map((o) => {
        const li = document.createElement('li');
        li.dataset.id = o.id;
        li.dataset.state = o.state || 'idle';
        const head = document.createElement('div');
        head.className = 'output-head';
        const name = document.createElement('strong');
        name.textContent = LABEL[o.type] || String(o.type);
        const where = document.createElement('code');
        where.textContent = String(o.url || '');
        const state = document.createElement('span');
        state.className = 'output-state';
        state.dataset.state = li.dataset.state;
        state.textContent = STATE_TEXT[o.state] || o.state || 'idle';
        head.append(name, ' ', where, ' ', state);
        const line = document.createElement('div');
        line.className = 'output-detail';
        line.textContent = detail(o);
        const tools = document.createElement('div');
        tools.className = 'output-tools';
        for (const [act, label] of [['test', 'Test'], ['edit', 'Edit'], ['remove', 'Remove']]) {
          const b = document.createElement('button');
          b.type = 'button';
          b.dataset.act = act;
          b.textContent = label;
          tools.append(b);
        }
        const note = this.notes.get(o.id);
        if (note) {
          const n = document.createElement('span');
          n.className = 'output-note';
          n.dataset.ok = String(note.ok);
          n.textContent = note.text;
          tools.append(n);
        }
        li.append(head, line, tools);
        return li;
      });
      this.ui.list.replaceChildren(...items);
    }

    openForm(id) {
      const ui = this.ui;
      this.editing = id;
      const o = this.outputs.find((x) => x.id === id);
      ui.type.value = o ? o.type : 'youtube';
      ui.type.disabled = Boolean(o); // an output keeps its type
      ui.url.value = '';
      ui.password.value = '';
      ui.save.textContent = o ? 'Save' : 'Add';
      ui.formHint.textContent = '';
      this.fitForm();
      ui.form.hidden = false;
      ui.url.focus();
    }

    closeForm() {
      this.ui.form.hidden = true;
      this.editing = null;
      this.ui.url.value = '';
      this.ui.password.value = '';
    }

    // The fields the chosen type takes; when editing, blank fields keep what the server holds.
    fitForm() {
      const ui = this.ui;
      const type = ui.type.value;
      const obs = type === 'obs';
      const hook = type === 'webhook';
      const editing = this.editing !== null;
      ui.passwordRow.hidden = !(obs || hook);
      ui.passwordLabel.textContent = hook
        ? 'Signing secret (16 characters or more; Nova-Signature carries its HMAC-SHA256)'
        : 'obs-websocket password';
      ui.urlLabel.textContent = obs
        ? 'obs-websocket address (OBS: Tools, WebSocket Server Settings)'
        : hook
          ? 'Webhook URL (each final is POSTed there as JSON)'
          : 'Caption ingestion URL (YouTube Studio: "POST captions to URL"; it holds the stream key)';
      // A YouTube URL holds the stream key: masked like a password. OBS's address and a
      // webhook's are not secret (the webhook's secret is its own field).
      ui.url.type = obs || hook ? 'text' : 'password';
      ui.url.placeholder = editing
        ? 'unchanged'
        : (obs ? 'ws://127.0.0.1:4455' : hook ? 'https://example.com/nova' : 'http://upload.youtube.com/closedcaption?cid=…');
      ui.password.placeholder = editing ? 'unchanged' : (hook ? 'a long random string' : 'as OBS shows it');
    }

    async submit() {
      const ui = this.ui;
      const url = ui.url.value.trim();
      const password = ui.password.value;
      let list;
      if (this.editing === null) {
        if (!url) { ui.formHint.textContent = 'Fill in the address first.'; ui.url.focus(); return; }
        const item = { type: ui.type.value, url };
        if (item.type === 'obs') item.password = password;
        if (item.type === 'webhook') item.secret = password;
        list = [...this.outputs.map((o) => ({ id: o.id })), item];
      } else {
        const change = { id: this.editing };
        if (url) change.url = url;
        if (ui.type.value === 'obs' && password) change.password = password;
        if (ui.type.value === 'webhook' && password) change.secret = password;
        list = this.outputs.map((o) => (o.id === this.editing ? change : { id: o.id }));
      }
      if (await this.save(list, ui.formHint)) this.closeForm();
    }

    async remove(id) {
      await this.save(this.outputs.filter((o) => o.id !== id).map((o) => ({ id: o.id })), null);
    }

    /** PATCH the room's outputs; the server's own words on a refusal. */
    async save(list, hintEl) {
      const say = (text) => { if (hintEl) hintEl.textContent = text; else this.hint(text, 'bad'); };
      if (!this.token()) { say('Changing outputs needs the room\'s publish token: paste it above.'); return false; }
      let res;
      try {
        res = await fetch(this.url(), { method: 'PATCH', headers: this.headers(true), body: JSON.stringify({ outputs: list }) });
      } catch {
        say('Cannot reach the Nova Voice server: nothing was changed.');
        return false;
      }
      const body = await res.text().catch(() => '');
      if (res.ok) {
        let info = {};
        try { info = JSON.parse(body); } catch { /* shown at the next refresh */ }
        this.show(Array.isArray(info.outputs) ? info.outputs : []);
        return true;
      }
      const { code, message } = errorOf(body);
      if (code === 'view_token_required') {
        this.ui.viewRow.hidden = false;
        say('This room is private: where its captions go is for those who may read them. Paste its view token below the list, then try again.');
        this.ui.view.focus();
        return false;
      }
      if (res.status === 401) say('Changing outputs needs the room\'s publish token: paste it above.');
      else if (res.status === 403) say('The publish token above does not open this room.');
      else say(message || `The server did not take the change (HTTP ${res.status}).`);
      return false;
    }

    async test(id, button) {
      button.disabled = true;
      let note;
      try {
        const res = await fetch(this.url(`/outputs/${encodeURIComponent(id)}/test`), { method: 'POST', headers: this.headers(false) });
        const body = await res.text().catch(() => '');
        let answer = {};
        try { answer = JSON.parse(body); } catch { /* an error page */ }
        if (res.ok && answer.ok) note = { ok: true, text: `Test caption sent at ${new Date().toLocaleTimeString()}` };
        else if (res.ok) note = { ok: false, text: `Test failed: ${answer.message || 'no answer'}` };
        else {
          const refused = errorOf(body);
          if (refused.code === 'view_token_required') this.ui.viewRow.hidden = false;
          note = { ok: false, text: refused.message || `Test refused (HTTP ${res.status})` };
        }
      } catch {
        note = { ok: false, text: 'Cannot reach the Nova Voice server.' };
      }
      this.notes.set(id, note);
      await this.refresh();
    }
  }

  root.NovaOutputs = NovaOutputs;
})(window);

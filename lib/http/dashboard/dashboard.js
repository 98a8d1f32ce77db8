// drover's dashboard: a live table of the services of `drover up`, fed by its HTTP API's event
// stream (api/v1/events), with start/stop/restart buttons and a log tail. Every URL is relative,
// so the page works wherever the API is mounted; data reaches the page through textContent and
// attributes only, never as markup.
'use strict';
(() => {
  const SAMPLES = 60;        // snapshots kept per service for the sparklines
  const LOG_CAP = 1000;      // lines kept in the log panel
  const STALL_MS = 10000;    // a stream silent this long is dead (snapshots come every 2 s)
  const MIN_DELAY = 1000, MAX_DELAY = 10000; // reconnect backoff
  const TOKEN_KEY = 'drover-token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const STATES = ['stopped', 'starting', 'running', 'ready', 'stopping', 'exited', 'backoff', 'failed'];
  const SIGNALS = { 1: 'HUP', 2: 'INT', 3: 'QUIT', 4: 'ILL', 6: 'ABRT', 7: 'BUS', 8: 'FPE', 9: 'KILL',
    10: 'USR1', 11: 'SEGV', 12: 'USR2', 13: 'PIPE', 14: 'ALRM', 15: 'TERM' };
  const COLUMNS = [['name', 'Service'], ['state', 'State'], ['pid', 'PID'], ['uptime', 'Uptime'],
    ['restarts', 'Restarts'], ['last-exit', 'Last exit'], ['ready', 'Ready'], ['health', 'Health'],
    ['cpu', 'CPU'], ['rss', 'Memory'], ['actions', 'Actions']];

  const $ = (id) => document.getElementById(id);
  const ui = {
    rows: $('service-rows'), empty: $('empty'), filter: $('filter'), summary: $('summary'),
    banner: $('conn-banner'), bannerText: $('conn-text'), retry: $('conn-retry'),
    tokenForm: $('token-form'), tokenInput: $('token-input'), tokenNote: $('token-note'),
    notice: $('notice'), noticeText: $('notice-text'), noticeClose: $('notice-close'),
    panel: $('log-panel'), logTitle: $('log-title'), logStatus: $('log-status'), lines: $('log-lines'),
    logClose: $('log-close'),
  };

  const services = new Map(); // name -> { status, at, samples, row, cells, ... }
  let offlineSince = null;    // performance.now() when the event stream was lost
  let snapshotSeen = false;

  // ---- requests --------------------------------------------------------------------------------

  let memoryToken = '';
  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return memoryToken; }
  }
  function setToken(token) {
    memoryToken = token;
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage disabled */ }
  }

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function errorMessage(res) {
    let text = '';
    try {
      text = await res.text();
      const body = JSON.parse(text);
      if (body && body.error) return String(body.error.message || body.error.code);
    } catch (_) { /* not JSON */ }
    return text.trim().slice(0, 200) || `HTTP ${res.status}`;
  }

  // fetch with the token; a 401 asks for a token and throws.
  async function request(url, init = {}) {
    const headers = new Headers(init.headers);
    const token = getToken();
    if (token) headers.set('Authorization', 'Bearer ' + token);
    const res = await fetch(url, { ...init, headers, cache: 'no-store' });
    if (res.ok) return res;
    const message = await errorMessage(res);
    if (res.status === 401) askToken(token !== '');
    throw new HttpError(res.status, message);
  }

  // Reads a server-sent event stream and calls onEvent(type, data) for each message; resolves
  // when the server ends it. fetch rather than EventSource, so the Authorization header goes too.
  async function readEvents(url, signal, onEvent) {
    const res = await request(url, { signal, headers: { Accept: 'text/event-stream' } });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '', type = '', data = [];
    const field = (line) => {
      if (line === '') { // a blank line ends the message
        if (data.length) onEvent(type || 'message', data.join('\n'));
        type = ''; data = [];
        return;
      }
      if (line[0] === ':') return; // a comment
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (name === 'event') type = value;
      else if (name === 'data') data.push(value);
      // retry and id are ignored: the reconnect policy is the page's own
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let start = 0;
      for (let i = 0; i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        if (c === 13 && i + 1 === buf.length) break; // a CR LF may be cut in two: wait for more
        field(buf.slice(start, i));
        if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
        start = i + 1;
      }
      buf = buf.slice(start);
      if (buf.length > (1 << 20)) throw new Error('a line of the event stream is too long');
    }
  }

  // ---- the event stream --------------------------------------------------------------------------

  let events = null;      // AbortController of the current event stream
  let retryTimer = 0;
  let retryDelay = MIN_DELAY;

  function connect() {
    clearTimeout(retryTimer);
    if (events) events.abort();
    const ctrl = events = new AbortController();
    let stall = 0, live = false;
    const watch = () => {
      clearTimeout(stall);
      stall = setTimeout(() => ctrl.abort(new Error('drover stopped answering')), STALL_MS);
    };
    watch();
    readEvents('api/v1/events?output=0', ctrl.signal, (type, data) => {
      watch();
      if (!live) { live = true; online(); }
      onEvent(type, data);
    }).then(() => { throw new Error('drover closed the event stream'); }).catch((err) => {
      clearTimeout(stall);
      if (ctrl !== events) return; // replaced by a newer stream
      events = null;
      if (err instanceof HttpError && err.status === 401) { hideBanner(); return; } // the form retries
      offline(ctrl.signal.aborted && ctrl.signal.reason instanceof Error ? ctrl.signal.reason : err);
    });
  }

  function online() {
    retryDelay = MIN_DELAY;
    offlineSince = null;
    document.body.classList.remove('offline');
    hideBanner();
  }

  function offline(err) {
    if (offlineSince === null) offlineSince = performance.now();
    document.body.classList.add('offline');
    const delay = retryDelay;
    retryDelay = Math.min(retryDelay * 2, MAX_DELAY);
    const why = err instanceof TypeError ? 'network error' : err.message;
    showBanner(`Connection to drover lost (${why}). Reconnecting in ${delay / 1000} s…`);
    retryTimer = setTimeout(() => {
      showBanner('Connection to drover lost. Reconnecting…');
      connect();
    }, delay);
  }

  function showBanner(text) {
    ui.bannerText.textContent = text;
    ui.banner.hidden = false;
  }
  function hideBanner() { ui.banner.hidden = true; }

  function onEvent(type, data) {
    let msg;
    try { msg = JSON.parse(data); } catch (_) { return; }
    if (!msg || typeof msg !== 'object') return;
    if (type === 'snapshot' && Array.isArray(msg.services)) snapshot(msg.services);
    else if (type === 'status') { upsert(msg); filterRows(); summarize(); }
    // state, exited, restart, probe, notify: a status message follows each of them
  }

  function snapshot(list) {
    snapshotSeen = true;
    const now = performance.now();
    const seen = new Set();
    let prev = null;
    for (const st of list) {
      const svc = upsert(st, now);
      if (!svc) continue;
      seen.add(svc.name);
      addSample(svc, st, now);
      const want = prev ? prev.nextSibling : ui.rows.firstChild; // drover's order
      if (svc.row !== want) ui.rows.insertBefore(svc.row, want);
      prev = svc.row;
    }
    for (const [name, svc] of services) {
      if (!seen.has(name)) { svc.row.remove(); services.delete(name); } // removed by a reload
    }
    filterRows();
    summarize();
  }

  // ---- the table ---------------------------------------------------------------------------------

  function upsert(st, now = performance.now()) {
    if (!st || typeof st.name !== 'string' || st.name === '') return null;
    let svc = services.get(st.name);
    if (!svc) {
      svc = makeRow(st.name);
      services.set(st.name, svc);
      ui.rows.append(svc.row);
    }
    svc.status = st;
    svc.at = now;
    render(svc);
    return svc;
  }

  function node(tag, className, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function makeSpark() {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', `0 0 ${SAMPLES - 1} 20`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const path = document.createElementNS(SVG_NS, 'path');
    svg.append(path);
    return { svg, path };
  }

  function makeRow(name) {
    const row = node('tr');
    row.dataset.service = name;
    const c = {};
    for (const [key, label] of COLUMNS) {
      const cell = node(key === 'name' ? 'th' : 'td', key);
      if (key === 'name') cell.scope = 'row';
      cell.dataset.label = label;
      row.append(cell);
      c[key] = cell;
    }
    c.name.append(node('span', 'name-text', name), c.reason = node('span', 'reason'));
    c.state.append(c.badge = node('span', 'badge'));
    for (const key of ['cpu', 'rss']) {
      const spark = makeSpark();
      c[key + 'Path'] = spark.path;
      c[key].append(spark.svg, c[key + 'Value'] = node('span', 'value', '—'));
    }
    const svc = { name, row, cells: c, samples: [], status: {}, at: 0, buttons: {} };
    for (const action of ['start', 'stop', 'restart', 'logs']) {
      const b = node('button', 'act act-' + action, action);
      b.type = 'button';
      b.dataset.action = action;
      b.setAttribute('aria-label', action === 'logs' ? `logs of ${name}` : `${action} ${name}`);
      if (action === 'logs') {
        b.setAttribute('aria-controls', 'log-panel');
        b.setAttribute('aria-expanded', 'false');
        b.addEventListener('click', () => toggleLogs(name, b));
      } else {
        b.addEventListener('click', () => act(name, action, b));
      }
      svc.buttons[action] = b;
      c.actions.append(b);
    }
    return svc;
  }

  function set(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }
  function setClass(el, base, modifier) {
    const name = modifier ? `${base} ${modifier}` : base;
    if (el.className !== name) el.className = name;
  }

  function render(svc) {
    const s = svc.status, c = svc.cells;
    const state = STATES.includes(s.state) ? s.state : 'unknown';
    set(c.badge, String(s.state ?? 'unknown'));
    setClass(c.badge, 'badge', 'st-' + state);
    set(c.reason, s.reason ? String(s.reason) : '');
    set(c.pid, s.pid == null ? '—' : String(s.pid));
    set(c.restarts, s.restarts == null ? '—' : String(s.restarts));
    set(c['last-exit'], lastExit(s));
    c['last-exit'].title = s.last_exit ? String(s.last_exit) : '';
    setClass(c['last-exit'], 'last-exit', s.last_exit_code === 0 ? 'good' : s.last_exit ? 'bad' : '');
    set(c.ready, s.ready ? 'yes' : 'no');
    setClass(c.ready, 'ready', s.ready ? 'good' : '');
    const health = s.health === 'healthy' || s.health === 'unhealthy' ? s.health : '—';
    set(c.health, health);
    setClass(c.health, 'health', health === 'healthy' ? 'good' : health === 'unhealthy' ? 'bad' : '');
    c.uptime.title = s.since ? `state since ${s.since}` : '';
    set(c.uptime, uptime(svc));
  }

  function lastExit(s) {
    if (s.last_exit_code != null) return `exit ${s.last_exit_code}`;
    if (s.last_exit_signal != null) {
      const abbrev = SIGNALS[s.last_exit_signal];
      return abbrev ? 'SIG' + abbrev : `signal ${s.last_exit_signal}`;
    }
    return s.last_exit ? 'unknown' : '—';
  }

  // Ticks locally between snapshots; frozen while the stream is lost.
  function uptime(svc) {
    const s = svc.status;
    if (s.uptime_ms == null || s.pid == null) return '—';
    const now = offlineSince ?? performance.now();
    return duration(s.uptime_ms + Math.max(0, now - svc.at));
  }

  function duration(ms) {
    const pad = (n) => String(n).padStart(2, '0');
    let s = Math.floor(ms / 1000);
    if (s < 60) return `${s}s`;
    let m = Math.floor(s / 60); s %= 60;
    if (m < 60) return `${m}m ${pad(s)}s`;
    const h = Math.floor(m / 60); m %= 60;
    if (h < 24) return `${h}h ${pad(m)}m`;
    return `${Math.floor(h / 24)}d ${h % 24}h`;
  }

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
  }

  // CPU % between two snapshots of the same process: cpu_ms over the time between them
  // (the process's own age when both have it).
  function cpuPercent(a, b) {
    if (a.cpu == null || b.cpu == null || a.pid !== b.pid || b.cpu < a.cpu) return null;
    const dt = a.up != null && b.up != null && b.up > a.up ? b.up - a.up : b.t - a.t;
    return dt > 0 ? ((b.cpu - a.cpu) / dt) * 100 : null;
  }

  function addSample(svc, st, now) {
    const list = svc.samples;
    list.push({ t: now, pid: st.pid, up: st.uptime_ms, cpu: st.cpu_ms, rss: st.rss_bytes });
    if (list.length > SAMPLES + 1) list.shift();
    const cpu = [], rss = [];
    for (let i = 1; i < list.length; i++) {
      cpu.push(cpuPercent(list[i - 1], list[i]));
      rss.push(list[i].rss ?? null);
    }
    if (list.length === 1) rss.push(list[0].rss ?? null);
    drawSpark(svc.cells.cpuPath, cpu, 1);
    drawSpark(svc.cells.rssPath, rss, 1 << 20);
    const lastCpu = cpu.length ? cpu[cpu.length - 1] : null;
    const lastRss = rss[rss.length - 1];
    set(svc.cells.cpuValue, lastCpu == null ? '—' : `${lastCpu.toFixed(lastCpu < 10 ? 1 : 0)}%`);
    set(svc.cells.rssValue, lastRss == null ? '—' : bytes(lastRss));
  }

  // The newest value at the right edge; a gap (null) lifts the pen.
  function drawSpark(path, values, floor) {
    let max = floor;
    for (const v of values) if (v != null && v > max) max = v;
    const x0 = SAMPLES - values.length;
    let d = '', pen = false;
    values.forEach((v, i) => {
      if (v == null) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${x0 + i} ${(19 - (v / max) * 18).toFixed(1)}`;
      pen = true;
    });
    if (d && !d.includes('L')) d += 'h0.01'; // a lone point still shows (round line cap)
    path.setAttribute('d', d);
  }

  function filterRows() {
    const q = ui.filter.value.trim().toLowerCase();
    let shown = 0;
    for (const svc of services.values()) {
      const match = !q || svc.name.toLowerCase().includes(q) ||
        String(svc.status.state ?? '').toLowerCase().includes(q);
      if (svc.row.hidden === match) svc.row.hidden = !match;
      if (match) shown++;
    }
    ui.empty.hidden = shown > 0;
    if (!shown) set(ui.empty, !snapshotSeen ? 'Connecting to drover…'
      : services.size ? `No service matches “${ui.filter.value.trim()}”.` : 'No services.');
  }

  function summarize() {
    const counts = {};
    for (const svc of services.values()) counts[svc.status.state] = (counts[svc.status.state] || 0) + 1;
    const parts = [`${services.size} service${services.size === 1 ? '' : 's'}`];
    for (const st of STATES) if (counts[st]) parts.push(`${counts[st]} ${st}`);
    set(ui.summary, parts.join(' · '));
    document.title = counts.failed ? `drover (${counts.failed} failed)` : 'drover';
  }

  setInterval(() => {
    for (const svc of services.values()) set(svc.cells.uptime, uptime(svc));
  }, 1000);

  // ---- actions -----------------------------------------------------------------------------------

  async function act(name, action, button) {
    if (button.getAttribute('aria-busy') === 'true') return; // no double clicks
    button.setAttribute('aria-busy', 'true');
    try {
      await request(`api/v1/services/${encodeURIComponent(name)}/${action}`, { method: 'POST' });
    } catch (err) {
      notify(`${action} ${name} failed: ${err instanceof TypeError ? 'network error' : err.message}`);
    } finally {
      button.removeAttribute('aria-busy');
    }
  }

  function notify(text) {
    ui.noticeText.textContent = text;
    ui.notice.hidden = false;
  }
  ui.noticeClose.addEventListener('click', () => { ui.notice.hidden = true; });

  // ---- the log panel -----------------------------------------------------------------------------

  let logs = null;    // { name, opener, ctrl, timer, delay }
  let pending = [];   // line nodes waiting for the next frame
  let frameQueued = false;

  function toggleLogs(name, opener) {
    if (logs && logs.name === name) { closeLogs(true); return; }
    closeLogs(false);
    logs = { name, opener, ctrl: null, timer: 0, delay: MIN_DELAY };
    opener.setAttribute('aria-expanded', 'true');
    ui.logTitle.textContent = `Logs: ${name}`;
    ui.panel.hidden = false;
    document.body.classList.add('logs-open');
    follow(logs);
    ui.lines.focus({ preventScroll: true });
  }

  function closeLogs(restoreFocus) {
    if (!logs) return;
    const { opener, ctrl, timer } = logs;
    logs = null;
    if (ctrl) ctrl.abort();
    clearTimeout(timer);
    pending = [];
    ui.panel.hidden = true;
    document.body.classList.remove('logs-open');
    opener.setAttribute('aria-expanded', 'false');
    if (restoreFocus && opener.isConnected) opener.focus();
  }

  // Follows the service's log; after a break it starts over from the kept lines.
  function follow(cur) {
    const ctrl = cur.ctrl = new AbortController();
    ui.lines.replaceChildren();
    pending = [];
    set(ui.logStatus, 'connecting…');
    const url = `api/v1/services/${encodeURIComponent(cur.name)}/logs?follow=1&n=200`;
    readEvents(url, ctrl.signal, (type, data) => {
      if (logs !== cur) return;
      if (cur.delay !== MIN_DELAY || ui.logStatus.textContent !== 'following') {
        cur.delay = MIN_DELAY;
        set(ui.logStatus, 'following');
      }
      let msg;
      try { msg = JSON.parse(data); } catch (_) { return; }
      if (type === 'line') queueLine(lineNode(msg));
      else if (type === 'lost') queueLine(node('div', 'line lost', `… ${msg.count} lines lost (the reader fell behind) …`));
    }).then(() => { throw new Error('the stream ended'); }).catch((err) => {
      if (logs !== cur || cur.ctrl !== ctrl) return;
      if (err instanceof HttpError && err.status === 401) { set(ui.logStatus, 'needs a token'); return; }
      if (err instanceof HttpError && err.status === 404) { set(ui.logStatus, err.message); return; }
      const why = err instanceof TypeError ? 'network error' : err.message;
      set(ui.logStatus, `disconnected (${why}); retrying in ${cur.delay / 1000} s`);
      cur.timer = setTimeout(() => { if (logs === cur) follow(cur); }, cur.delay);
      cur.delay = Math.min(cur.delay * 2, MAX_DELAY);
    });
  }

  function lineNode(msg) {
    const line = node('div', msg.stream === 'stderr' ? 'line stderr' : 'line');
    const when = new Date(msg.time);
    if (!Number.isNaN(when.getTime())) {
      const t = node('time', 'ts', when.toLocaleTimeString([], { hour12: false }));
      t.dateTime = String(msg.time);
      line.append(t);
    }
    if (msg.stream === 'stderr') line.append(node('span', 'tag', 'err'));
    line.append(node('span', 'text', typeof msg.escaped === 'string' ? msg.escaped : ''));
    return line;
  }

  function queueLine(el) {
    pending.push(el);
    if (pending.length > LOG_CAP) pending.splice(0, pending.length - LOG_CAP);
    if (!frameQueued) { frameQueued = true; requestAnimationFrame(flushLines); }
  }

  function flushLines() {
    frameQueued = false;
    if (!pending.length) return;
    const box = ui.lines;
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 8; // else the user scrolled up
    box.append(...pending);
    pending = [];
    for (let extra = box.childElementCount - LOG_CAP; extra > 0; extra--) box.firstElementChild.remove();
    if (atEnd) box.scrollTop = box.scrollHeight;
  }

  ui.logClose.addEventListener('click', () => closeLogs(true));

  // ---- token -------------------------------------------------------------------------------------

  function askToken(refused) {
    ui.tokenNote.textContent = refused ? 'drover refused the token; enter the right one.'
      : 'This drover needs an access token.';
    if (ui.tokenForm.hidden) {
      ui.tokenForm.hidden = false;
      ui.tokenInput.focus();
    }
  }

  ui.tokenForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = ui.tokenInput.value.trim();
    if (!token) return;
    setToken(token);
    ui.tokenInput.value = '';
    ui.tokenForm.hidden = true;
    retryDelay = MIN_DELAY;
    connect();
    if (logs) { clearTimeout(logs.timer); if (logs.ctrl) logs.ctrl.abort(); follow(logs); }
  });

  // ---- keyboard and start ------------------------------------------------------------------------

  ui.filter.addEventListener('input', filterRows);
  ui.retry.addEventListener('click', () => { retryDelay = MIN_DELAY; showBanner('Reconnecting…'); connect(); });

  const typing = (t) => t instanceof HTMLElement &&
    (t.isContentEditable || t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT');

  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && !e.ctrlKey && !e.metaKey && !e.altKey && !typing(e.target)) {
      e.preventDefault();
      ui.filter.focus();
      ui.filter.select();
    } else if (e.key === 'Escape') {
      if (e.target === ui.filter && ui.filter.value) { ui.filter.value = ''; filterRows(); }
      else if (logs) closeLogs(true);
    }
  });

  connect();
})();

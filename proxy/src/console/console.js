'use strict';
// The ops console: the room now, the last 30 minutes (GET /admin/history) and the
// controls (PATCH /admin/settings). The token is kept for this tab only.
(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';
  let token = sessionStorage.getItem('waitroom-token') || '';
  let state = null;
  // The room steered (several with [[rooms]]): '' is the default room.
  let room = sessionStorage.getItem('waitroom-room') || '';
  const inRoom = (path) => room ? path + '?room=' + encodeURIComponent(room) : path;

  async function api(method, path, body) {
    const r = await fetch(path, {
      method,
      cache: 'no-store',
      headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
    if (!r.ok) {
      const e = new Error((json && json.error) || text || String(r.status));
      e.status = r.status;
      throw e;
    }
    return json;
  }

  function signedIn(yes) {
    $('login').hidden = yes;
    for (const id of ['room', 'controls', 'event', 'charts']) $(id).hidden = !yes;
  }

  const fmt = (v, digits) => (v === null || v === undefined || Number.isNaN(v)) ? '–'
    : Number(v).toLocaleString('en', { maximumFractionDigits: digits || 0 });

  function minutes(s) {
    if (s === null || s === undefined) return '–';
    if (s < 90) return fmt(s) + ' s';
    return fmt(s / 60, 1) + ' min';
  }

  // Draws `series` ([{ values, cls }]) into the SVG `id`, on one scale from 0.
  function chart(id, series, label) {
    const svg = $(id);
    const desc = svg.querySelector('desc');
    while (svg.lastChild && svg.lastChild !== desc) svg.removeChild(svg.lastChild);
    const n = Math.max(...series.map((s) => s.values.length), 2);
    let top = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > top) top = v;
    top = top > 0 ? top * 1.1 : 1;
    for (const s of series) {
      const points = [];
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const x = (i / (n - 1)) * 300;
        const y = 105 - (v / top) * 95;
        points.push(x.toFixed(1) + ',' + y.toFixed(1));
      });
      const line = document.createElementNS(SVG, 'polyline');
      line.setAttribute('class', s.cls);
      line.setAttribute('points', points.join(' '));
      svg.appendChild(line);
    }
    const text = document.createElementNS(SVG, 'text');
    text.setAttribute('x', '2');
    text.setAttribute('y', '9');
    text.textContent = 'max ' + fmt(top / 1.1, 1);
    svg.appendChild(text);
    desc.textContent = label;
  }

  function render(s, samples) {
    state = s;
    const opening = s.opens_at && Date.parse(s.opens_at) > Date.now();
    const mode = s.closed ? 'closed' : s.paused ? 'paused' : s.passthrough ? 'everybody through'
      : opening ? 'opens at ' + s.opens_at + (s.lottery ? ' (lottery)' : '')
        : s.queue_all ? 'everybody queues' : 'open';
    $('now-mode').textContent = mode;
    $('now-waiting').textContent = fmt(s.queue_length);
    $('now-active').textContent = fmt(s.active_users) + ' of ' + fmt(s.max_active_users);
    $('now-outflow').textContent = fmt(s.measured_per_minute) + ' / ' + fmt(s.new_users_per_minute);
    const last = samples.length ? samples[samples.length - 1] : null;
    $('now-wait').textContent = minutes(last ? last.wait_at_back_s : null);
    $('now-issued').textContent = fmt(s.places_issued);
    $('pause').textContent = s.paused ? 'Resume' : 'Pause';
    $('close').textContent = s.closed ? 'Open the room' : 'Close the room';
    $('queue-all').setAttribute('aria-pressed', String(!!s.queue_all));
    $('passthrough').setAttribute('aria-pressed', String(!!s.passthrough));
    if (document.activeElement !== $('rate-input') && !$('rate-input').value) $('rate-input').placeholder = s.new_users_per_minute;
    if (document.activeElement !== $('capacity-input') && !$('capacity-input').value) $('capacity-input').placeholder = s.max_active_users;

    const col = (k) => samples.map((x) => x[k]);
    chart('chart-waiting', [{ values: col('waiting'), cls: 'series' }],
      'People waiting, now ' + fmt(s.queue_length));
    chart('chart-outflow', [
      { values: col('admitted_per_minute'), cls: 'series' },
      { values: col('measured_per_minute'), cls: 'series second' },
      { values: col('rate'), cls: 'limit' },
    ], 'Admissions a minute: measured ' + fmt(s.measured_per_minute) + ', configured ' + fmt(s.new_users_per_minute));
    chart('chart-active', [
      { values: col('active'), cls: 'series' },
      { values: col('max_active'), cls: 'limit' },
    ], 'Active sessions ' + fmt(s.active_users) + ' of ' + fmt(s.max_active_users));
    chart('chart-latency', [
      { values: col('origin_p50_ms'), cls: 'series' },
      { values: col('origin_p95_ms'), cls: 'series third' },
    ], 'Origin latency p50 ' + fmt(last && last.origin_p50_ms, 1) + ' ms, p95 ' + fmt(last && last.origin_p95_ms, 1) + ' ms');
    chart('chart-errors', [{ values: samples.map((x) => x.origin_error_share === null ? null : x.origin_error_share * 100), cls: 'series third' }],
      'Origin error share');
    chart('chart-wait', [{ values: samples.map((x) => x.wait_at_back_s === null ? 0 : x.wait_at_back_s / 60), cls: 'series' }],
      'Wait at the back ' + minutes(last ? last.wait_at_back_s : null));
    chart('chart-places', [
      { values: col('called'), cls: 'series' },
      { values: col('passed_over'), cls: 'series second' },
      { values: col('refused'), cls: 'series third' },
    ], 'Places called, passed over, tokens refused each second');
  }

  async function refresh() {
    if (!token) return;
    try {
      const rooms = (await api('GET', '/admin/rooms')).rooms;
      pickers(rooms);
      const s = await api('GET', inRoom('/admin/state'));
      const h = await api('GET', inRoom('/admin/history'));
      const ev = (await api('GET', inRoom('/admin/event'))).event;
      const instances = (await api('GET', '/admin/instances')).instances;
      $('now-instances').textContent = fmt(instances.length);
      const list = $('instances-list');
      list.textContent = '';
      for (const i of instances) {
        const li = document.createElement('li');
        li.textContent = i.id + (i.host ? ' on ' + i.host : '') + ', public ' + i.public + ', admin ' + i.admin
          + ', version ' + i.version + ', since ' + i.started_at + (i.this ? ' (this one)' : '');
        list.appendChild(li);
      }
      signedIn(true);
      render(s, h.samples);
      $('event-now').textContent = ev
        ? 'Event ' + ev.phase.replace('_', '-') + ': pre-queue from ' + ev.prequeue_at + ', opens at ' + ev.opens_at
          + (ev.ends_at ? ', ends at ' + ev.ends_at + (ev.after === 'close' ? ' (then closed)' : '') : '')
          + (ev.lottery ? ', by lot' : '')
        : 'No event';
      $('status').textContent = 'Live, updated ' + new Date().toLocaleTimeString('en-GB');
    } catch (e) {
      if (e.status === 401) {
        token = '';
        sessionStorage.removeItem('waitroom-token');
        signedIn(false);
        $('status').textContent = 'The token was refused';
      } else {
        $('status').textContent = 'The admin listener does not answer: ' + e.message;
      }
    }
  }

  // The room picker, shown when there is more than one room.
  function pickers(rooms) {
    const select = $('room-select');
    const names = rooms.map((r) => r.name);
    if (!names.includes(room || 'default')) room = '';
    if (select.options.length !== names.length) {
      select.textContent = '';
      for (const name of names) {
        const o = document.createElement('option');
        o.value = name === 'default' ? '' : name;
        o.textContent = name;
        select.appendChild(o);
      }
    }
    select.value = room;
    $('room-picker').hidden = names.length < 2;
  }

  // Sends an event call after the operator confirmed it.
  async function eventCall(question, method, body, done) {
    if (!window.confirm(room ? question + ' (room ' + room + ')' : question)) return;
    try {
      await api(method, inRoom('/admin/event'), body);
      $('result').textContent = done;
    } catch (e) {
      $('result').textContent = 'Not changed: ' + e.message;
    }
    refresh();
  }

  // Applies a change after the operator confirmed it; the effect shows at the
  // next refresh, started at once.
  async function change(question, patch, done) {
    if (!window.confirm(room ? question + ' (room ' + room + ')' : question)) return;
    try {
      await api('PATCH', inRoom('/admin/settings'), patch);
      $('result').textContent = done;
    } catch (e) {
      $('result').textContent = 'Not changed: ' + e.message;
    }
    refresh();
  }

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('token').value.trim();
    sessionStorage.setItem('waitroom-token', token);
    $('token').value = '';
    refresh();
  });
  $('rate-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = parseInt($('rate-input').value, 10);
    if (!(v >= 1)) return;
    change('Set the rate to ' + v + ' admissions a minute?', { new_users_per_minute: v }, 'Rate set to ' + v + ' a minute');
    $('rate-input').value = '';
  });
  $('capacity-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = parseInt($('capacity-input').value, 10);
    if (!(v >= 1)) return;
    change('Allow at most ' + v + ' active sessions?', { max_active_users: v }, 'Capacity set to ' + v);
    $('capacity-input').value = '';
  });
  $('pause').addEventListener('click', () => {
    const pausing = !(state && state.paused);
    change(pausing ? 'Pause admissions? Everybody keeps or takes a place; nobody is let in.' : 'Resume admissions?',
      { paused: pausing }, pausing ? 'Paused' : 'Resumed');
  });
  $('close').addEventListener('click', () => {
    const closing = !(state && state.closed);
    change(closing ? 'Close the room? The page says it is closed.' : 'Open the room again?',
      { closed: closing }, closing ? 'Closed' : 'Opened');
  });
  $('queue-all').addEventListener('click', () => {
    const on = !(state && state.queue_all);
    change(on ? 'Give everybody a place, even while there is room?' : 'Let newcomers straight in again while there is room?',
      { queue_all: on }, on ? 'Everybody queues' : 'Newcomers go straight in while there is room');
  });
  $('passthrough').addEventListener('click', () => {
    const on = !(state && state.passthrough);
    change(on ? 'Let everybody through, with no limits?' : 'Bring the limits back?',
      { passthrough: on }, on ? 'Everybody goes through' : 'Limits back');
  });
  $('opening-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const at = $('opening-input').value.trim();
    change('Schedule the opening at ' + at + '? Nobody is let in before then.', { opens_at: at }, 'Opening scheduled at ' + at);
  });
  $('opening-cancel').addEventListener('click', () => {
    change('Cancel the scheduled opening?', { opens_at: null }, 'Opening cancelled');
  });

  $('event-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = (id) => $(id).value.trim() || null;
    const number = (id) => { const v = parseInt($(id).value, 10); return v >= 1 ? v : null; };
    const body = {
      prequeue_at: text('event-prequeue'), opens_at: text('event-opens'), ends_at: text('event-ends'),
      new_users_per_minute: number('event-rate'), max_active_users: number('event-capacity'),
      message: text('event-message'), lottery: $('event-lottery').checked,
      after: $('event-close').checked ? 'close' : 'normal',
    };
    eventCall('Schedule the event opening at ' + body.opens_at + '?', 'PUT', body, 'Event scheduled');
  });
  $('event-cancel').addEventListener('click', () => {
    eventCall('Cancel the event? One under way gives the room its settings back.', 'DELETE', undefined, 'Event cancelled');
  });
  $('room-select').addEventListener('change', () => {
    room = $('room-select').value;
    sessionStorage.setItem('waitroom-room', room);
    refresh();
  });

  signedIn(false);
  if (token) refresh();
  setInterval(refresh, 1000);
})();

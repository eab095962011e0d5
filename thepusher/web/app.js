/* thepusher status page.

   Shows what GET /api/status says, kept live by /api/events (server-sent events; on a
   master without them, or whose streams are all taken, /api/status is polled once a
   second), and offers the buttons that start, abort, retry and wake groups and put
   unassigned clients into one.
   Every string from the master reaches the page as text (textContent, setAttribute),
   never as HTML. No framework, no build step, no files from elsewhere. */

"use strict";

const TOKEN_KEY = "thepusher.admin-token";
const NEEDS_TOKEN = "This master takes changes only with its admin token.";
const POLL_MS = 1000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
const WATCHDOG_MS = 20000; // this long without an event: ask /api/status whether the master is there
const STREAM_AGAIN_MS = 15000; // a master whose event streams were all taken (503) is asked again after this
const STATES = ["NONE", "WAIT", "BUSY", "DONE", "ERROR"];
const SILENT_S = 5; // a BUSY client this long without a report is silent (master/bottleneck.py SILENT)

const page = {
  status: null, // the last /api/status answer
  pick: {}, // unassigned host -> the group chosen in its <select>
  busy: new Set(), // actions with a request under way (their buttons are disabled)
};

// -- DOM helpers ---------------------------------------------------------------------

/** An element: h("td", {class: "num"}, "text", child, [more]); null children are skipped. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "width") el.style.width = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const $ = id => document.getElementById(id);

const drawn = new WeakMap(); // element -> JSON of the data it was last drawn from

/** Redraw `el` from `data` only when `data` changed: clicks, focus and <select>s survive
    the several updates a second that a round brings. */
function update(el, data, build) {
  const key = JSON.stringify(data);
  if (drawn.get(el) === key) return;
  drawn.set(el, key);
  el.replaceChildren(...[build(data)].flat(Infinity).filter(x => x != null && x !== false));
}

// -- formatting ----------------------------------------------------------------------

function fmtBytes(n) {
  if (n == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function fmtRate(rate) {
  return rate > 0 ? `${(rate / 1e6).toFixed(rate >= 1e8 ? 0 : 1)} MB/s` : "—";
}

const pad2 = n => String(n).padStart(2, "0");

function fmtSeconds(s) {
  if (s == null || !isFinite(s) || s < 0) return "—";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad2(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad2(Math.floor((s % 3600) / 60))} min`;
}

function fmtClock(epoch) {
  if (!epoch) return "—";
  const d = new Date(epoch * 1000);
  const today = d.toDateString() === new Date().toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

/** Hosts in words: all of a few, the first ones of many ("a, b, ... and 28 more"). */
function someHosts(hosts, few = 10) {
  if (hosts.length <= few + 2) return hosts.join(", ");
  return `${hosts.slice(0, few).join(", ")} and ${hosts.length - few} more`;
}

function fmtPercent(fraction) {
  return `${(100 * fraction).toFixed(fraction > 0 && fraction < 0.1 ? 1 : 0)}%`;
}

// -- what the figures mean -------------------------------------------------------------

function fraction(c) {
  if (c.state === "DONE") return 1;
  return c.bytes_total > 0 ? Math.min(1, c.bytes_done / c.bytes_total) : 0;
}

/** "no report for 12 s" for a BUSY client that stopped reporting (frozen, or cut off). */
function silence(c) {
  return c.state === "BUSY" && c.last_report_age >= SILENT_S ? `no report for ${fmtSeconds(c.last_report_age)}` : null;
}

function written(c) {
  return c.bytes_total ? `${fmtBytes(c.bytes_done)} / ${fmtBytes(c.bytes_total)}` : fmtBytes(c.bytes_done);
}

function clientEta(c) {
  if (c.eta_seconds !== undefined) return c.eta_seconds;
  if (c.state !== "BUSY" || !(c.rate > 0) || !(c.bytes_total > 0)) return null;
  return (c.bytes_total - c.bytes_done) / c.rate;
}

const running = g => !!(g.round && g.round.phase !== "finished");

/** The hosts of the group's current (or last) round in chain order; before any round,
    the group's hosts in the order the chain would take. */
function chainOf(g) {
  const r = g.round;
  return r && r.chain && r.chain.length ? r.chain : (g.hosts || []);
}

/** The group's clients: the chain's in chain order, then the others in config order. */
function orderedClients(g) {
  const chain = chainOf(g);
  const at = new Map(chain.map((host, i) => [host, i]));
  const rank = c => (at.has(c.host) ? at.get(c.host) : chain.length + (c.position || 0));
  return (g.clients || []).slice().sort((a, b) => rank(a) - rank(b));
}

function groupTotals(g) {
  if (g.totals) return g.totals;
  const inRound = new Set(chainOf(g));
  const cs = (g.clients || []).filter(c => inRound.has(c.host));
  const sum = f => cs.reduce((n, c) => n + (f(c) || 0), 0);
  const etas = cs.map(clientEta).filter(x => x != null);
  return {
    bytes_done: sum(c => (c.state === "DONE" ? c.bytes_total || c.bytes_done : c.bytes_done)),
    bytes_total: sum(c => c.bytes_total),
    rate: sum(c => (c.state === "BUSY" ? c.rate : 0)),
    eta_seconds: etas.length ? Math.max(...etas) : null,
  };
}

function overallEta(st) {
  if (st.eta_seconds !== undefined) return st.eta_seconds;
  const etas = (st.groups || []).filter(running).map(g => groupTotals(g).eta_seconds).filter(x => x != null);
  return etas.length ? Math.max(...etas) : null;
}

function countStates(clients) {
  const n = {};
  for (const c of clients) n[c.state] = (n[c.state] || 0) + 1;
  return STATES.filter(s => n[s]).map(s => ({state: s, n: n[s]}));
}

function startRule(g) {
  if (g.start === "manual") return "start by hand";
  let rule = "start when all are ready";
  if (g.wait) rule += `, or ${fmtSeconds(g.wait)} after the first with ≥ ${g.min_clients || 1}`;
  if (g.retries) rule += `; ${g.retries} automatic retr${g.retries === 1 ? "y" : "ies"}`;
  return rule;
}

function describeRound(r) {
  if (!r) return "no round yet";
  const what = `round ${r.number}`;
  if (r.phase !== "finished") {
    return r.aborted ? `${what} aborted, ending` : `${what} ${r.phase} since ${fmtClock(r.started)}`;
  }
  const took = r.started && r.finished ? ` in ${fmtSeconds(r.finished - r.started)}` : "";
  return `${what} ${r.aborted ? "aborted" : "finished"} ${fmtClock(r.finished)}${took}`;
}

function describeBottleneck(b) {
  if (b.cause === "silent") {
    return [h("b", null, b.host), ` — no report for ${fmtSeconds(b.last_report_age)} (frozen, or cut off from the master)`];
  }
  if (b.cause === "cpu") {
    const unread = b.unread != null ? `, ${fmtPercent(b.unread)} of its socket buffer unread` : "";
    return [h("b", null, b.host), ` — reads more slowly than it is sent to: short of CPU${unread}`];
  }
  if (b.cause === "link") {
    const next = b.next ? ` → ${b.next}` : "";
    return [h("b", null, `link ${b.host}${next}`), next ? ` (or ${b.next} reading slowly)` : ""];
  }
  const why = b.cause === "decompression" ? "decompressing the image" : b.cause === "disk" ? "its disk" : b.cause;
  const queue = b.capacity ? `, writer queue ${b.write_queue}/${b.capacity}` : "";
  return [h("b", null, b.host), ` — ${why || "slow"}${queue}`];
}

// -- small widgets ---------------------------------------------------------------------

function stateBadge(state) {
  return h("span", {class: `state s-${state}`}, state);
}

const VERIFIED = {readback: "read back", write: "write hash"};

/** How a DONE was checked (read back from the disk, or the hash of what was written),
 * what was done to a larger disk's end afterwards, and how far a read-back has come
 * while it runs. */
function verification(c) {
  if (c.state === "DONE" && c.verified_by) {
    const after = c.after_write || [];
    const how = c.verified_by === "readback" ? "the disk's content was read back and matches the image"
      : "the bytes written hash to the image's digest";
    return h("span", {class: "verified small muted", title: [how, ...after].join("\n")},
      (VERIFIED[c.verified_by] || c.verified_by) + (after.length ? " · disk end fitted" : ""));
  }
  if (c.state === "BUSY" && c.read_back > 0 && c.bytes_total > 0)
    return h("span", {class: "verified small muted"}, `reading back ${fmtPercent(c.read_back / c.bytes_total)}`);
  return null;
}

/** What a disk is, in a word or three: "nvme SSD", "sata HDD boot", "usb removable". */
function diskKind(d) {
  const words = [d.transport, d.transport === "loop" ? null : d.rotational ? "HDD" : "SSD"];
  if (d.removable) words.push("removable");
  if (d.read_only) words.push("read-only");
  if (d.boot) words.push("boot");
  return words.filter(Boolean).join(" ");
}

/** What the master told the host at its last network boot, and the admin's mark for its
    next one (GET /boot.ipxe, docs/netboot.md). */
function bootLine(c) {
  const last = c.last_boot && c.last_boot.boot ? c.last_boot : null;
  if (!last && !c.next_boot) return null;
  const mark = c.next_boot === "image" ? "re-image" : c.next_boot ? `upload ${c.next_boot.slice(4)}` : "";
  return h("div", {class: "boot muted small", "data-next-boot": c.next_boot || ""},
    mark ? h("span", {class: "tag"}, `next boot: ${mark}`) : null, mark && last ? " " : null,
    last ? `last network boot ${fmtClock(last.at)}: ${last.boot === "local" ? "its disk" : last.boot} (${last.why})` : null,
    " ",
    h("button", {type: "button", class: "link", "data-action": "mark",
      onclick: () => act(`mark:${c.host}`, "api/next-boot",
                         {targets: [c.host], boot: c.next_boot ? "clear" : "image"})},
      c.next_boot ? "clear mark" : "re-image at next boot"));
}

/** The client's disks on one line ("nvme0n1 476.9 GiB nvme SSD · sda 931.5 GiB sata HDD
    boot"), each with model, serial and WWN in its tooltip; the one it writes is marked. */
function disksLine(c) {
  if (!c.disks || !c.disks.length) return null;
  return h("div", {class: "disks muted small", "data-disks": c.disks.length}, c.disks.map((d, i) => [
    i ? " · " : null,
    h("span", {
      class: d.path === c.destination ? "disk target" : "disk", "data-disk": d.path,
      title: [d.path, d.model, d.serial && `serial ${d.serial}`, d.wwn && `WWN ${d.wwn}`,
        `sectors ${d.logical_sector_size}/${d.physical_sector_size}`,
        d.mounted && `${d.mounted} mounted from it`,
        d.path === c.destination ? "the disk this client writes" : null].filter(Boolean).join(" · "),
    }, d.path === c.destination ? "→ " : null, `${d.path.replace(/^\/dev\//, "")} ${fmtBytes(d.size)} ${diskKind(d)}`),
  ]));
}

function bar(frac, state) {
  return h("span", {
    class: `bar s-${state}`, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": Math.round(100 * frac), "data-progress": frac.toFixed(4),
  }, h("span", {width: `${(100 * frac).toFixed(2)}%`}));
}

function button(label, opts) {
  return h("button", {
    type: "button", class: opts.cls, disabled: opts.disabled || page.busy.has(opts.key),
    title: opts.title, onclick: opts.onclick, "data-action": opts.action,
  }, page.busy.has(opts.key) ? `${label}…` : label);
}

/** A table that becomes stacked cards on a phone; each cell is [label, attrs, ...content]. */
function table(cls, headings, rows) {
  return h("table", {class: `stack ${cls}`},
    h("thead", null, h("tr", null, headings.map(([label, attrs]) => h("th", attrs, label)))),
    h("tbody", null, rows));
}

function cell(label, attrs, ...content) {
  return h("td", Object.assign({"data-label": label}, attrs), ...content);
}

/** A cell that may have nothing to say: "—" on a wide screen, left out on a phone. */
function optional(label, cls, text, placeholder = "—") {
  return text == null ? cell(label, {class: `${cls} blank`}, placeholder) : cell(label, {class: cls}, text);
}

// -- header ----------------------------------------------------------------------------

function renderHeader(st) {
  const eta = overallEta(st);
  const active = (st.groups || []).filter(running);
  const names = active.map(g => `${g.name} (round ${g.round.number})`).join(", ");
  $("overall").textContent = active.length ? `Running: ${names} · ETA ${fmtSeconds(eta)}` : "";
  const m = st.master || {};
  $("meta").textContent = [m.version && `v${m.version}`, m.config].filter(Boolean).join(" · ");
  let title = "thepusher";
  if (active.length) {
    const totals = active.map(groupTotals);
    const done = totals.reduce((n, t) => n + t.bytes_done, 0);
    const total = totals.reduce((n, t) => n + t.bytes_total, 0);
    if (total > 0) title = `${fmtPercent(done / total)} · thepusher`;
  }
  document.title = title;
}

// -- groups ----------------------------------------------------------------------------

function renderGroups(st) {
  const section = $("groups");
  const groups = st.groups || [];
  if (!groups.length) {
    update(section, "none", () => [h("h2", null, "Groups"),
      h("p", {class: "empty"}, "The config has no client groups.")]);
    return;
  }
  const names = groups.map(g => g.name);
  update(section, names, () => [h("h2", null, "Groups"), names.map(name =>
    h("article", {class: "card group", "data-group": name},
      h("div", {class: "group-head"}), h("div", {class: "group-body"})))]);
  for (const g of groups) {
    const card = section.querySelector(`article[data-group="${CSS.escape(g.name)}"]`);
    update(card.querySelector(".group-head"), headData(g), groupHead);
    drawBody(card.querySelector(".group-body"), g);
  }
}

function headData(g) {
  const busy = ["start", "retry", "abort", "wake", "reimage"].filter(a => page.busy.has(`${a}:${g.name}`));
  return {
    name: g.name, image: g.image, rule: startRule(g), round: describeRound(g.round),
    running: running(g), held: !!g.held, busy, waiting: someHosts(g.waiting_for || []),
  };
}

function groupHead(d) {
  const path = action => `api/groups/${encodeURIComponent(d.name)}/${action}`;
  const go = (action, confirmText) => () => {
    if (confirmText && !window.confirm(confirmText)) return;
    act(`${action}:${d.name}`, path(action), {});
  };
  return [
    h("h3", null, "Group ", h("span", {class: "mono"}, d.name)),
    h("span", {class: "info"}, `image ${d.image} · ${d.round} · `,
      d.held ? h("b", null, "held after an abort: starts again only with Start or Retry")
        : d.waiting ? h("b", null, `next round waits for ${d.waiting} to be ready; ` +
                                   "Start goes now with the ready ones")
        : d.rule),
    h("div", {class: "actions"},
      button("Start", {key: `start:${d.name}`, action: "start", cls: "primary", disabled: d.running,
        title: "Start a round now with every ready (WAIT) host", onclick: go("start")}),
      button("Retry", {key: `retry:${d.name}`, action: "retry", disabled: d.running,
        title: "A follow-up round for the ready hosts that failed or came late", onclick: go("retry")}),
      button("Abort", {key: `abort:${d.name}`, action: "abort", cls: "danger", disabled: !d.running,
        title: "Stop the running round; its hosts end in ERROR",
        onclick: go("abort", `Abort the running round of group ${d.name}? Its unfinished hosts end in ERROR.`)}),
      button("Wake", {key: `wake:${d.name}`, action: "wake",
        title: "Send Wake-on-LAN packets to the group's hosts", onclick: go("wake")}),
      button("Re-image at next boot", {key: `reimage:${d.name}`, action: "reimage",
        title: "Every host of the group boots thepusher at its next network boot, until it is DONE " +
               "(needs master --boot); with Wake, the room re-images itself",
        onclick: () => {
          if (!window.confirm(`Image every host of group ${d.name} at its next network boot? ` +
                              "Their disks are overwritten then.")) return;
          act(`reimage:${d.name}`, "api/next-boot", {targets: [d.name], boot: "image"});
        }})),
  ];
}

/** The group's chain, totals, notes and hosts, each redrawn only when what it shows
    changed: a table for a small group, a grid (grid.js) for a large one, whose tiles
    change one by one. */
function drawBody(body, g) {
  const large = (g.clients || []).length > GRID_OVER;
  update(body, large ? "grid" : "table", () => ["chains", "totals", "notes", "hosts"].map(part =>
    h("div", {class: `part-${part}`})));
  const [chains, totals, notes, hosts] = body.children;
  if (large) update(chains, chainsOf(g), chainSummary);
  else update(chains, g, chainView);
  update(totals, totalsData(g), totalsView);
  update(notes, notesData(g), d => [bottleneckNote(d), roundNotes(d.round)]);
  if (large) drawGrid(hosts, g);
  else update(hosts, g, clientTable);
}

/** The round's chains, each a list of hosts; before any round, the one the group's
    hosts would make. */
function chainsOf(g) {
  const r = g.round;
  return r && r.chains && r.chains.length ? r.chains.map(c => c.hosts) : [chainOf(g)];
}

function chainView(g) {
  const byHost = new Map((g.clients || []).map(c => [c.host, c]));
  const b = g.bottleneck;
  const chains = chainsOf(g);
  const rows = chains.map((hosts, i) => {
    const items = [h("span", {class: "hop master"}, h("b", null, "master"),
      h("small", {class: "muted"}, chains.length > 1 ? `chain ${i + 1}` : "source"))];
    for (const host of hosts) {
      const c = byHost.get(host) || {host, state: "NONE"};
      const linkSlow = b && b.cause === "link" && b.next === host;
      items.push(h("span", {class: `arrow${linkSlow ? " bottleneck" : ""}`, "aria-hidden": "true"}, "→"));
      const slow = b && b.host === host && b.cause !== "link";
      items.push(h("span", {class: `hop s-${c.state}${slow ? " bottleneck" : ""}`, "data-hop": host},
        h("b", null, host), h("small", null, c.state)));
    }
    const label = chains.length > 1 ? `chain ${i + 1} of ${chains.length}, in order` : "chain, in order";
    return h("div", {class: "chain", "data-chain": i + 1, "aria-label": label}, items);
  });
  return rows.length === 1 ? rows[0] : h("div", {class: "chains"}, rows);
}

/** What the totals line shows: the group's bytes, rate and ETA, its round's hosts by state. */
function totalsData(g) {
  if (!g.round) return null;
  const inRound = new Set(chainOf(g));
  return {totals: groupTotals(g), running: running(g),
          counts: countStates((g.clients || []).filter(c => inRound.has(c.host)))};
}

function totalsView(d) {
  if (!d) return null;
  const t = d.totals;
  const frac = t.bytes_total > 0 ? Math.min(1, t.bytes_done / t.bytes_total) : 0;
  const state = d.running ? "BUSY" : d.counts.some(x => x.state === "ERROR") ? "ERROR" : "DONE";
  return h("div", {class: "totals", "data-progress": frac.toFixed(4)},
    bar(frac, state),
    h("span", {class: "figures"},
      h("b", null, fmtPercent(frac)), ` · ${fmtBytes(t.bytes_done)} of ${fmtBytes(t.bytes_total)}`,
      d.running ? ` · ${fmtRate(t.rate)} · ETA ${fmtSeconds(t.eta_seconds)}` : ""),
    h("span", {class: "outcomes"}, d.counts.map(x => h("span", {class: `state s-${x.state}`}, `${x.n} ${x.state}`))));
}

/** The round's notes: who holds the chain back (while it streams), errors, hosts left out. */
function notesData(g) {
  const r = g.round;
  return {bottleneck: running(g) ? g.bottleneck || null : null,
          round: r ? {number: r.number, error: r.error, left_out: r.left_out} : null};
}

function bottleneckNote(d) {
  if (!d.bottleneck) return null;
  return h("p", {class: "bottleneck-note", "data-bottleneck": d.bottleneck.host},
    "Holding the chain back: ", describeBottleneck(d.bottleneck));
}

function roundNotes(r) {
  if (!r) return null;
  return [
    r.error ? h("p", {class: "round-error"}, `Master: ${r.error}`) : null,
    r.left_out && r.left_out.length
      ? h("p", {class: "muted"}, `Not in round ${r.number} (not ready when it started): ${someHosts(r.left_out)}`)
      : null,
  ];
}

function clientTable(g) {
  const chain = chainOf(g);
  const b = g.bottleneck && running(g) ? g.bottleneck : null;
  const rows = orderedClients(g).map(c => {
    const frac = fraction(c);
    const at = chain.indexOf(c.host);
    const slow = b && b.host === c.host;
    return h("tr", {
      "data-host": c.host, "data-state": c.state, "data-progress": frac.toFixed(4),
      class: slow ? "is-bottleneck" : null,
    },
    cell("#", {class: "num muted c-pos"}, at < 0 ? "–" : at + 1),
    cell("Host", {class: "lead c-host"}, h("span", {class: "mono"}, c.host),
      slow ? h("span", {class: "tag"}, "bottleneck") : null,
      c.mac ? h("div", {class: "muted mono small"}, c.mac) : null, disksLine(c), bootLine(c)),
    cell("State", {class: "c-state"}, stateBadge(c.state), " ", verification(c),
      silence(c) ? h("div", {class: "silent-note small"}, silence(c)) : null),
    cell("Progress", {class: "progress"}, bar(frac, c.state), " ", h("span", {class: "pct"}, fmtPercent(frac))),
    cell("Written", {class: "num c-written"}, written(c),
      c.free_bytes ? h("div", {class: "muted small free",
        title: "free blocks of the image: left as the disk had them, counted as zeros in the check"},
        `${fmtBytes(c.free_bytes)} free, skipped`) : null),
    optional("Rate", "num c-rate", c.state === "BUSY" && c.rate > 0 ? fmtRate(c.rate) : null),
    optional("ETA", "num c-eta", c.state === "BUSY" && clientEta(c) != null ? fmtSeconds(clientEta(c)) : null),
    optional("Error", "error c-error", c.error || null, ""));
  });
  return table("clients", [["#", {class: "num"}], ["Host"], ["State"], ["Progress"], ["Written", {class: "num"}],
    ["Rate", {class: "num"}], ["ETA", {class: "num"}], ["Error"]], rows);
}

// -- clients in no group ---------------------------------------------------------------

function renderUnassigned(st) {
  const groups = (st.groups || []).map(g => g.name);
  const hosts = (st.unassigned || []).map(c => ({host: c.host, mac: c.mac || "", state: c.state}));
  const busy = hosts.filter(c => page.busy.has(`assign:${c.host}`)).map(c => c.host);
  update($("unassigned"), {groups, hosts, busy}, unassignedView);
}

function unassignedView(d) {
  if (!d.hosts.length) return [];
  const rows = d.hosts.map(c => {
    const chosen = d.groups.includes(page.pick[c.host]) ? page.pick[c.host] : d.groups[0];
    const pick = e => { page.pick[c.host] = e.target.value; };
    const select = h("select", {"aria-label": `group for ${c.host}`, onchange: pick},
      d.groups.map(name => h("option", {value: name, selected: name === chosen}, name)));
    const path = `api/hosts/${encodeURIComponent(c.host)}/group`;
    const add = () => act(`assign:${c.host}`, path, {group: select.value});
    return h("tr", {"data-unassigned": c.host},
      cell("Host", {class: "lead mono"}, c.host),
      cell("MAC", {class: "mono"}, c.mac || "—"),
      cell("State", null, stateBadge(c.state)),
      cell("Add to", null, d.groups.length
        ? [select, " ", button("Add", {key: `assign:${c.host}`, action: "assign", onclick: add})]
        : h("span", {class: "muted"}, "no group to add it to")));
  });
  return [h("h2", null, "Clients in no group"),
    h("div", {class: "card"}, table("unassigned", [["Host"], ["MAC"], ["State"], ["Add to group"]], rows))];
}

// -- images ------------------------------------------------------------------------------

function renderImages(st) {
  update($("images"), st.images || [], imagesView);
}

function imagesView(images) {
  if (!images.length) return [];
  const rows = images.map(i => {
    const compressed = i.compression && i.compression !== "NONE";
    const note = i.error ? h("span", {class: "state s-ERROR"}, "error")
      : i.configured === false ? h("span", {class: "state s-WAIT"}, "not configured")
        : h("span", {class: `state ${i.state === "ready" ? "s-DONE" : "s-BUSY"}`}, i.state || "?");
    return h("tr", {"data-image": i.name},
      cell("Image", {class: "lead mono"}, i.name),
      cell("File", {class: "mono"}, i.filename),
      cell("Size", {class: "num"}, fmtBytes(i.content_size),
        compressed && i.size != null ? h("div", {class: "muted"}, `${fmtBytes(i.size)} compressed`) : null,
        i.zero_bytes && i.content_size ? h("div", {class: "muted", title: "sent as zero runs, not as bytes"},
          `${Math.round(100 * i.zero_bytes / i.content_size)}% zeros`) : null,
        i.free_bytes && i.content_size ? h("div", {class: "muted free",
          title: "blocks its filesystems do not use: never sent, never written (its .bmap)"},
          `${fmtBytes(i.free_bytes)} free, not sent`) : null),
      cell("Compression", null, i.compression || "—"),
      cell("SHA-256", null, i.sha256 ? h("code", {class: "digest", title: i.sha256}, i.sha256) : "—"),
      cell("State", null, note,
        i.error ? h("div", {class: "error-line"}, i.error) : null,
        i.configured === false && i.hint ? h("div", {class: "muted"}, i.hint) : null));
  });
  return [h("h2", null, "Images"), h("div", {class: "card"}, table("images",
    [["Image"], ["File"], ["Size", {class: "num"}], ["Compression"], ["SHA-256"], ["State"]], rows))];
}

// -- recent rounds -------------------------------------------------------------------------

function renderHistory(st) {
  update($("history"), st.history || [], historyView);
}

/** Hosts by the reason they failed, leaving out the round's own error (an abort's). */
function reasons(errors, roundError) {
  const by = new Map();
  for (const [host, why] of Object.entries(errors)) {
    if (why && why !== roundError) by.set(why, (by.get(why) || []).concat(host));
  }
  return [...by].map(([why, hosts]) => [hosts, why]);
}

function historyView(rounds) {
  if (!rounds.length) return [];
  const rows = rounds.slice().reverse().map(r => {
    const outcome = r.outcome || {};
    const errors = r.errors || {};
    const hosts = (r.chain && r.chain.length ? r.chain : Object.keys(outcome));
    return h("tr", {"data-round": r.number},
      cell("Round", {class: "num lead"}, r.number),
      cell("Group", {class: "mono"}, r.group),
      cell("Image", {class: "mono"}, r.image),
      cell("Started", null, fmtClock(r.started)),
      cell("Took", {class: "num"}, r.started && r.finished ? fmtSeconds(r.finished - r.started) : "—"),
      cell("Outcome", null,
        h("div", {class: "outcomes"}, r.aborted ? h("span", {class: "state s-ERROR"}, "ABORTED") : null,
          r.interrupted ? h("span", {class: "state s-WAIT", title: "the master restarted during "
            + "this round; clients that finished told the new master"}, "INTERRUPTED") : null,
          hosts.map(host => h("span", {class: "outcome", title: errors[host] || null},
            h("span", {class: "mono"}, host), " ", stateBadge(outcome[host] || "NONE"),
            (r.verified_by || {})[host] === "readback" ? h("small", {class: "muted"}, " read back") : null))),
        r.error ? h("div", {class: "error-line"}, r.error) : null,
        reasons(errors, r.error).map(([hosts, why]) =>
          h("div", {class: "error-line"}, `${hosts.join(", ")}: ${why}`))));
  });
  return [h("h2", null, "Recent rounds"), h("div", {class: "card"}, table("history",
    [["Round", {class: "num"}], ["Group"], ["Image"], ["Started"], ["Took", {class: "num"}], ["Outcome"]], rows))];
}

// -- everything ----------------------------------------------------------------------------

function render(st) {
  page.status = st;
  renderHeader(st);
  renderGroups(st);
  renderUnassigned(st);
  renderImages(st);
  renderHistory(st);
}

function redraw() {
  if (page.status) render(page.status);
}

// -- notices: what the master answered to a button ---------------------------------------------

function notify(text, isError) {
  const box = $("notices");
  const item = h("div", {class: `notice${isError ? " error" : ""}`, role: isError ? "alert" : "status"},
    h("span", null, text),
    h("button", {type: "button", "aria-label": "dismiss", onclick: () => item.remove()}, "×"));
  box.prepend(item);
  while (box.children.length > 4) box.lastChild.remove();
  if (!isError) setTimeout(() => item.remove(), 10000);
}

// -- admin token ---------------------------------------------------------------------------------

function storedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
}

function tokenRequired() {
  const a = page.status && page.status.admin;
  return !!(a && a.token_required);
}

/** Ask for the admin token in a small dialog; resolves to it (kept for the session) or null. */
function askToken(why) {
  const dialog = $("token-dialog");
  const input = $("token-input");
  $("token-why").textContent = why;
  input.value = "";
  return new Promise(resolve => {
    const finish = value => {
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    $("token-form").onsubmit = e => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (err) { /* private mode: this call only */ }
      finish(token);
    };
    $("token-cancel").onclick = () => finish(null);
    dialog.onclose = () => finish(null); // Esc
    dialog.showModal();
    input.focus();
  });
}

// -- mutating calls --------------------------------------------------------------------------------

async function post(path, body, token) {
  const headers = {"Content-Type": "application/json"};
  if (token) headers["X-Admin-Token"] = token;
  let resp;
  try {
    resp = await fetch(path, {method: "POST", headers, body: JSON.stringify(body || {}), cache: "no-store"});
  } catch (e) {
    return {status: 0, data: {error: "the master cannot be reached"}};
  }
  let data;
  try { data = await resp.json(); } catch (e) { data = {}; }
  return {status: resp.status, ok: resp.ok, data};
}

/** POST with the session's token; a 401 asks for the token and tries once more. */
async function act(key, path, body) {
  if (page.busy.has(key)) return;
  page.busy.add(key);
  redraw();
  try {
    let token = storedToken();
    if (!token && tokenRequired()) token = await askToken(NEEDS_TOKEN);
    if (token === null) return notify("Not sent: no admin token given.", true);
    let res = await post(path, body, token);
    if (res.status === 401) {
      const why = token ? "The master did not accept the token." : NEEDS_TOKEN;
      token = await askToken(res.data.error ? `${why} (${res.data.error})` : why);
      if (token === null) return notify("Not sent: no admin token given.", true);
      res = await post(path, body, token);
      if (res.status === 401) try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
    }
    if (res.ok) notify(res.data.message || "Done.", false);
    else notify(res.data.error || `The master answered HTTP ${res.status}.`, true);
    refreshOnce();
  } finally {
    page.busy.delete(key);
    redraw();
  }
}

// -- keeping the page live ---------------------------------------------------------------------------

const link = {
  mode: "events", // "events" while /api/events works, "polling" on a master without it (or none free)
  pollers: 0, // counts the pollers started: only the latest polls
  source: null,
  retries: 0,
  lastEvent: 0,
  lastUp: 0,
};

const LINK_WORDS = {live: "live", polling: "polling", connecting: "connecting…", down: "disconnected"};

/** Connected or not: the pill, the banner and a dimmed page say so. "live" means the
    events stream is open; "polling" a master without one. */
function setUp(up) {
  if (up) link.lastUp = Date.now();
  const open = link.source && link.source.readyState === EventSource.OPEN;
  const state = !up ? "down" : link.mode === "polling" ? "polling" : open ? "live" : "connecting";
  if (document.body.dataset.link === state) return;
  document.body.dataset.link = state;
  const pill = $("conn");
  pill.className = `pill ${state}`;
  pill.textContent = LINK_WORDS[state];
  const since = link.lastUp ? ` Last update ${new Date(link.lastUp).toLocaleTimeString()}.` : "";
  $("banner").textContent = `Disconnected from the master — reconnecting…${since}`;
  $("banner").hidden = up;
  $("main").classList.toggle("stale", !up);
}

function got(st) {
  link.lastEvent = Date.now();
  link.retries = 0;
  setUp(true);
  render(st);
}

async function fetchStatus(timeoutMs) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs || 5000);
  try {
    const resp = await fetch("api/status", {cache: "no-store", signal: ctl.signal});
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    return await resp.json();
  } finally {
    clearTimeout(timer);
  }
}

async function refreshOnce() {
  let st;
  try { st = await fetchStatus(); } catch (e) { setUp(false); return; }
  got(st);
}

function connect() {
  const es = new EventSource("api/events");
  link.source = es;
  es.addEventListener("status", ev => {
    try { got(JSON.parse(ev.data)); } catch (e) { /* a broken event: the next one will do */ }
  });
  es.onopen = () => refreshOnce(); // a reconnect shows the master at once, changed or not
  es.onerror = () => {
    if (link.source !== es) return;
    setUp(false);
    if (es.readyState === EventSource.CLOSED) { // closed for good: the browser will not retry
      es.close();
      link.source = null;
      whyClosed();
    } // else the browser reconnects by itself (the master's retry: 2000)
  };
}

/** The events stream failed for good: a master without /api/events (404) is polled;
    so is one whose event streams are all taken (503), until it has one again;
    otherwise try again, backing off. */
async function whyClosed() {
  const ctl = new AbortController();
  let status = 0;
  try {
    const resp = await fetch("api/events", {cache: "no-store", signal: ctl.signal});
    status = resp.status;
  } catch (e) { /* unreachable */ }
  ctl.abort();
  if (status === 404 || status === 503) return startPolling(status === 503);
  const wait = BACKOFF_MS[Math.min(link.retries++, BACKOFF_MS.length - 1)];
  setTimeout(connect, wait);
}

/** Poll /api/status once a second; with `streamAgain`, try the events stream again
    after STREAM_AGAIN_MS (and poll again if it is still refused). */
function startPolling(streamAgain) {
  const mine = ++link.pollers; // a newer poller, or the stream, ends this one
  link.mode = "polling";
  const tick = async () => {
    if (link.pollers !== mine) return;
    await refreshOnce();
    setTimeout(tick, POLL_MS);
  };
  tick();
  if (streamAgain) {
    setTimeout(() => {
      if (link.pollers !== mine) return;
      link.pollers++;
      link.mode = "events";
      connect();
    }, STREAM_AGAIN_MS);
  }
}

/** No event for a while is normal on an idle master; make sure it is still there
    (a master that froze keeps the stream open but silent). */
function watchdog() {
  if (link.mode === "events" && link.source && Date.now() - link.lastEvent > WATCHDOG_MS) {
    link.lastEvent = Date.now();
    fetchStatus().then(got, () => {
      setUp(false);
      if (link.source) { link.source.close(); link.source = null; }
      whyClosed();
    });
  }
}

function start() {
  link.lastEvent = Date.now();
  if (typeof EventSource === "function") connect();
  else startPolling();
  setInterval(watchdog, 5000);
  refreshOnce();
}

start();

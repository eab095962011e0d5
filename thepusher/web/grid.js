/* thepusher status page: a large group's hosts as a grid. app.js draws the rest of the
   page, and a group of more than GRID_OVER hosts through drawGrid.

   One small tile per host, in chain order: coloured by its state, filled as far as it
   got, its details in its tooltip and, on a tap, in a box under the grid. Chips count
   the states and show the hosts of one; a search box finds names, addresses and MACs.
   A tile is made once per host and afterwards changed only where what it shows
   changed, so that a room of 500 costs little on each status event.

   Loaded before app.js, whose helpers (h, update, fmt*, fraction, ...) its functions
   use when they are called: this file runs nothing by itself. */

"use strict";

const GRID_OVER = 30; // a group of more hosts than this is drawn as a grid, a smaller one as a table

const grids = new WeakMap(); // the element a grid lives in -> its tiles, filter, search, chosen host

/** The group's hosts as a grid in `box`: made on the first call, brought up to date after. */
function drawGrid(box, g) {
  let view = grids.get(box);
  if (!view) {
    view = makeGrid(box);
    grids.set(box, view);
  }
  const at = new Map(chainOf(g).map((host, i) => [host, i])); // host -> its place in the chain
  const b = g.bottleneck && running(g) ? g.bottleneck : null;
  view.group = g;
  view.clients = orderedClients(g);
  placeTiles(view);
  for (const c of view.clients) {
    const facts = tileFacts(c, at.get(c.host), b, view.selected === c.host);
    view.facts.set(c.host, facts);
    drawTile(view.tiles.get(c.host), facts);
  }
  drawChips(view);
  applyFilter(view);
  drawDetail(view);
}

function makeGrid(box) {
  const view = {box, group: null, clients: [], tiles: new Map(), facts: new Map(), order: "",
                filter: "", query: "", selected: ""};
  view.chips = h("div", {class: "chips", role: "group", "aria-label": "show the hosts in one state"},
    ["", ...STATES].map(state => h("button", {
      type: "button", class: `chip${state ? ` s-${state}` : ""}`, "data-filter": state, "data-count": 0,
      "aria-pressed": String(!state), onclick: () => { view.filter = state; drawChips(view); applyFilter(view); },
    }, state || "all", " ", h("b", null, "0"))));
  view.search = h("input", {
    type: "search", class: "grid-search", placeholder: "name, IP or MAC", "aria-label": "search hosts",
    oninput: () => { view.query = view.search.value; applyFilter(view); },
  });
  view.count = h("span", {class: "grid-count muted small"});
  view.grid = h("div", {class: "grid", onclick: e => {
    const tile = e.target.closest(".tile"); // a tap shows its host's details, another hides them
    if (tile) select(view, view.selected === tile.dataset.host ? "" : tile.dataset.host);
  }});
  view.detail = h("div", {class: "tile-detail", hidden: true});
  box.replaceChildren(h("div", {class: "grid-tools"}, view.chips, view.search, view.count),
    view.grid, view.detail);
  return view;
}

/** One tile per host, in chain order; moved or made only when the hosts or their order change. */
function placeTiles(view) {
  const order = view.clients.map(c => c.host).join(" ");
  if (order === view.order) return;
  view.order = order;
  const tiles = new Map(view.clients.map(c => [c.host, view.tiles.get(c.host) || makeTile(c.host)]));
  view.tiles = tiles;
  view.grid.replaceChildren(...[...tiles.values()].map(t => t.el));
}

function makeTile(host) {
  const fill = h("span", {class: "fill"});
  const label = h("span", {class: "label"});
  return {el: h("button", {type: "button", class: "tile", "data-host": host}, fill, label), fill, label,
          shown: {}};
}

/** Everything a tile shows of a host (`at`: its place in the chain, undefined when it
    is not in it): its colour, fill and label, and its details as lines. */
function tileFacts(c, at, b, selected) {
  const frac = fraction(c);
  const quiet = silence(c);
  const slow = !!(b && b.host === c.host);
  const eta = clientEta(c);
  const lines = [
    [c.host, c.name].filter(Boolean).join(" · "),
    at === undefined ? "not in the round" : `#${at + 1} in the chain`,
    c.mac ? `MAC ${c.mac}` : null,
    `${c.state} · ${fmtPercent(frac)} · ${written(c)}`,
    c.state === "BUSY" && c.rate > 0 ? `${fmtRate(c.rate)}${eta != null ? ` · ETA ${fmtSeconds(eta)}` : ""}` : null,
    quiet,
    slow ? "holding the chain back" : null,
    c.error ? `error: ${c.error}` : null,
  ].filter(Boolean);
  return {state: c.state, frac: frac.toFixed(4), label: c.name || shortHost(c.host), slow, quiet: !!quiet,
          selected, lines};
}

/** The part of an address that tells the hosts of one room apart: 10.0.0.17 -> 17. */
function shortHost(host) {
  return host.split(/[.:]/).filter(Boolean).pop() || host;
}

/** Write into the tile what changed since it was last drawn, and nothing else. */
function drawTile(t, f) {
  const was = t.shown;
  const set = (what, value, write) => { if (was[what] !== value) { was[what] = value; write(value); } };
  set("class", `tile s-${f.state}${f.slow ? " bottleneck" : ""}${f.quiet ? " silent" : ""}` +
    (f.selected ? " selected" : ""), v => { t.el.className = v; });
  set("state", f.state, v => { t.el.dataset.state = v; });
  set("progress", f.frac, v => {
    t.el.dataset.progress = v;
    t.fill.style.width = `${(100 * v).toFixed(1)}%`;
  });
  set("title", f.lines.join("\n"), v => { t.el.title = v; });
  set("aria", `${f.lines[0]}: ${f.lines[3]}`, v => t.el.setAttribute("aria-label", v));
  set("label", f.label, v => { t.label.textContent = v; });
}

/** The chips' counts (every host of the group, whatever the search) and which one is on. */
function drawChips(view) {
  const n = {"": view.clients.length};
  for (const c of view.clients) n[c.state] = (n[c.state] || 0) + 1;
  for (const el of view.chips.children) {
    const count = String(n[el.dataset.filter] || 0);
    if (el.dataset.count !== count) {
      el.dataset.count = count;
      el.lastChild.textContent = count;
    }
    const on = String(view.filter === el.dataset.filter);
    if (el.getAttribute("aria-pressed") !== on) el.setAttribute("aria-pressed", on);
  }
}

/** Show the tiles of the chosen state that match the search, hide the others. */
function applyFilter(view) {
  const query = view.query.trim().toLowerCase();
  let shown = 0;
  for (const c of view.clients) {
    const hide = !matches(c, view.filter, query);
    const el = view.tiles.get(c.host).el;
    if (el.hidden !== hide) el.hidden = hide;
    if (!hide) shown++;
  }
  const all = view.clients.length;
  const text = shown === all ? `${all} hosts` : `${shown} of ${all} hosts shown`;
  if (view.count.textContent !== text) view.count.textContent = text;
}

/** In the state (any, for ""), and the query is part of its address, name or MAC (a MAC
    also without separators, or written with dashes). */
function matches(c, state, query) {
  if (state && c.state !== state) return false;
  if (!query) return true;
  const mac = (c.mac || "").toLowerCase();
  const hay = `${c.host} ${c.name || ""} ${mac} ${mac.replace(/[:-]/g, "")}`.toLowerCase();
  return hay.includes(query) || hay.includes(query.replace(/-/g, ":"));
}

/** The host whose details show under the grid ("" for none). */
function select(view, host) {
  view.selected = host;
  drawGrid(view.box, view.group);
}

function drawDetail(view) {
  const facts = view.facts.get(view.selected);
  if (view.detail.hidden !== !facts) view.detail.hidden = !facts;
  if (!facts) return;
  view.detail.dataset.host = view.selected;
  update(view.detail, facts, f => [
    h("button", {type: "button", class: "close", "aria-label": "close", onclick: () => select(view, "")}, "×"),
    h("b", {class: "mono"}, f.lines[0]), " ", stateBadge(f.state),
    f.lines.slice(1).map(line => h("div", {class: line.startsWith("error: ") ? "error-line" : null}, line)),
  ]);
}

/** A large group's chains in words: 500 hops in a row help nobody, and the tiles are in
    chain order. */
function chainSummary(chains) {
  return chains.map((hosts, i) => h("p", {class: "chain-summary muted", "data-chain": i + 1},
    chains.length > 1 ? `chain ${i + 1} of ${chains.length}: ` : "chain: ",
    `master → ${hosts.length} hosts`,
    hosts.length > 1 ? ` (${hosts[0]} … ${hosts[hosts.length - 1]})` : hosts.length ? ` (${hosts[0]})` : "",
    ", in the grid's order"));
}

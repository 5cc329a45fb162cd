// hardmine dashboard: reads the JSON endpoints of hardmine/dashboard/app.py and draws SVG.
// Every number shown comes from /api/runs/RUN, the same report as `hardmine status --json`.
// Text from the store goes in through textContent only, never as HTML.
"use strict";

(() => {
  const REFRESH_MS = 3000; // while a round of the run is unfinished
  const IDLE_REFRESH_MS = 30000; // once all are done or failed: a scheduled round may start
  const GALLERY_LIMIT = 48; // crops per gallery
  const KINDS = ["positive", "random", "hard"];
  const FINISHED = new Set(["done", "failed"]);
  const METRICS = [
    { key: "ap", label: "AP", digits: 3 },
    { key: "ap50", label: "AP50", digits: 3 },
    { key: "fp_per_image", label: "false positives per image", digits: 3 },
    { key: "recall", label: "recall", digits: 3 },
    { key: "yield_per_1k", label: "mining yield (admitted per 1k windows)", digits: 2 },
    { key: "windows_per_s", label: "windows/s", digits: 0 },
  ];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    run: null, // name of the run shown
    round: null, // round of the hardest-negatives gallery
    roundChosen: false, // the person picked the round: keep it across refreshes
    timer: null,
    generation: 0, // bumped when the run changes, so a late answer for the old run is dropped
    shown: {}, // gallery id -> ids it shows, to keep loaded crops across refreshes
  };

  // -------------------------------------------------------------------------------------------
  // Small DOM helpers

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    node.append(...children.map((child) => (child instanceof Node ? child : String(child))));
    return node;
  }

  function svg(tag, attrs = {}, text = null) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attrs);
    if (text !== null) node.textContent = String(text);
    return node;
  }

  function setAttributes(node, attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
  }

  function tooltip(node, text) {
    node.append(svg("title", {}, text));
    return node;
  }

  // The CLI's formatting (hardmine/cli.py `_number`): fixed digits, "-" when absent.
  function number(value, digits = 3) {
    if (value === null || value === undefined) return "-";
    return typeof value === "number" ? value.toFixed(digits) : String(value);
  }

  function count(value) {
    return value === null || value === undefined ? "-" : String(value);
  }

  function time(iso) {
    return iso ? iso.slice(0, 19).replace("T", " ") : "-";
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `${url} answered HTTP ${response.status}`);
    return body;
  }

  function runUrl(suffix = "") {
    return `/api/runs/${encodeURIComponent(state.run)}${suffix}`;
  }

  // -------------------------------------------------------------------------------------------
  // Loading and refreshing

  function init() {
    $("run-select").addEventListener("change", (event) => chooseRun(event.target.value));
    $("round-select").addEventListener("change", (event) => {
      state.round = Number(event.target.value);
      state.roundChosen = true;
      state.generation += 1;
      refresh();
    });
    window.addEventListener("hashchange", () => chooseRun(runFromHash()));
    start();
  }

  // Lists the runs and shows the one the address names, else the newest.
  async function start() {
    let status;
    try {
      status = await getJSON("/api/status");
    } catch (error) {
      showError(`cannot load the runs: ${error.message}`);
      setTimeout(start, REFRESH_MS);
      return;
    }
    const names = status.runs.map((run) => run.name);
    if (names.length === 0) {
      $("no-runs").hidden = false;
      return;
    }
    // Newest first; status lists runs oldest first.
    const select = $("run-select");
    select.replaceChildren(...names.slice().reverse().map((name) => el("option", {}, name)));
    const wanted = runFromHash();
    chooseRun(names.includes(wanted) ? wanted : names[names.length - 1]);
  }

  function runFromHash() {
    const match = /^#run=(.+)$/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  function chooseRun(name) {
    if (!name || name === state.run) return;
    state.run = name;
    state.round = null;
    state.roundChosen = false;
    state.shown = {};
    state.generation += 1;
    $("run-select").value = name;
    history.replaceState(null, "", `#run=${encodeURIComponent(name)}`);
    refresh();
  }

  async function refresh() {
    clearTimeout(state.timer);
    const generation = state.generation;
    let live = true;
    try {
      const run = await getJSON(runUrl());
      if (generation !== state.generation) return;
      live = run.rounds.some((round) => !FINISHED.has(round.status));
      pickRound(run);
      renderRun(run, live);
      await renderGalleries(generation);
      showError(null);
    } catch (error) {
      if (generation !== state.generation) return;
      showError(error.message);
    }
    // An unreachable server is tried again at the short interval.
    const delay = live ? REFRESH_MS : IDLE_REFRESH_MS;
    if (generation === state.generation) state.timer = setTimeout(refresh, delay);
  }

  // The gallery's round: the person's choice, else the newest round that admitted hard negatives.
  function pickRound(run) {
    const numbers = run.rounds.map((round) => round.number);
    if (state.roundChosen && numbers.includes(state.round)) return;
    const mined = run.rounds.filter((round) => round.added.hard > 0);
    const newest = mined.length ? mined[mined.length - 1] : run.rounds[run.rounds.length - 1];
    state.round = newest ? newest.number : null;
    state.roundChosen = false;
  }

  function showError(message) {
    $("error").hidden = !message;
    $("error").textContent = message || "";
  }

  // -------------------------------------------------------------------------------------------
  // The run: header, pool chart, metric charts, rounds table

  function renderRun(run, live) {
    $("run-view").hidden = false;
    const parts = [`dataset ${run.dataset}`, `created ${time(run.created_at)} UTC`];
    parts.push(`${run.rounds.length} round${run.rounds.length === 1 ? "" : "s"}`);
    if (run.stop_reason) parts.push(`stopped: ${run.stop_reason}`);
    $("run-summary").textContent = parts.join(" · ");
    const idle = run.rounds.length ? "finished" : "no rounds yet";
    $("live").textContent = live ? `live: refreshing every ${REFRESH_MS / 1000} s` : idle;
    $("live").className = live ? "live active" : "live";
    $("live").title = live ? "" : `checks for a new round every ${IDLE_REFRESH_MS / 1000} s`;

    $("legend").replaceChildren(
      ...KINDS.map((kind) => el("span", { class: `key kind-${kind}` }, kind)),
    );
    $("pool-chart").replaceChildren(poolChart(run.rounds));
    const charts = METRICS.map((metric) => metricChart(run.rounds, metric));
    $("metric-charts").replaceChildren(...charts);
    $("rounds-table").tBodies[0].replaceChildren(...run.rounds.map(roundRow));

    // Options are rebuilt only when the rounds change, so an open list stays open.
    const select = $("round-select");
    const numbers = run.rounds.map((round) => String(round.number));
    if ([...select.options].map((option) => option.value).join() !== numbers.join()) {
      select.replaceChildren(...numbers.map((n) => el("option", { value: n }, n)));
    }
    if (state.round !== null) select.value = String(state.round);
  }

  function poolChart(rounds) {
    const width = 760;
    const height = 280;
    const margin = { top: 24, right: 12, bottom: 34, left: 56 };
    const plotWidth = width - margin.left - margin.right;
    const plotHeight = height - margin.top - margin.bottom;
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      class: "pool-chart",
      role: "img",
      "aria-label": "pool per round by kind, and what each round added",
    });
    if (rounds.length === 0) {
      chart.append(placeholder(width, height, "no rounds yet"));
      return chart;
    }

    const total = (counts) => KINDS.reduce((sum, kind) => sum + counts[kind], 0);
    const top = niceCeiling(Math.max(1, ...rounds.map((round) => total(round.pool))));
    const y = (value) => margin.top + plotHeight - (value / top) * plotHeight;
    for (const tick of [0, top / 2, top]) {
      chart.append(
        gridLine(margin.left, width - margin.right, y(tick)),
        svg("text", { x: margin.left - 6, y: y(tick) + 4, class: "tick end" }, tick),
      );
    }

    chart.append(
      svg("text", { x: 2, y: margin.top - 10, class: "tick start" }, "examples"),
      svg("text", { x: margin.left - 6, y: height - 12, class: "tick end" }, "round"),
    );

    const slot = plotWidth / rounds.length;
    const barWidth = Math.min(56, slot * 0.5);
    rounds.forEach((round, index) => {
      const left = margin.left + index * slot + (slot - barWidth * 1.5) / 2;
      const pool = total(round.pool);
      const added = total(round.added);
      const group = svg("g", { class: "round-group", "data-round": round.number });
      group.append(
        ...stackedBar(round.pool, left, barWidth, y, "pool", round.number),
        ...stackedBar(round.added, left + barWidth, barWidth / 2, y, "added", round.number),
        barLabel(left + barWidth / 2, y(pool) - 6, "pool-total", pool),
        barLabel(left + barWidth * 1.25, y(added) - 6, "added-total", `+${added}`),
        svg("text", { x: left + barWidth * 0.75, y: height - 12, class: "tick" }, round.number),
      );
      chart.append(group);
    });
    return chart;
  }

  function stackedBar(counts, left, barWidth, y, series, roundNumber) {
    let base = 0;
    return KINDS.map((kind) => {
      const value = counts[kind];
      const rect = svg("rect", {
        x: left,
        y: y(base + value),
        width: barWidth,
        height: y(base) - y(base + value),
        class: `bar ${series} kind-${kind}`,
        "data-series": series,
        "data-kind": kind,
        "data-count": value,
      });
      base += value;
      const what = series === "pool" ? "in the pool after" : "added by";
      return tooltip(rect, `${kind}: ${value} ${what} round ${roundNumber}`);
    });
  }

  function barLabel(x, y, field, text) {
    return svg("text", { x, y, class: `bar-label ${field}`, "data-field": field }, text);
  }

  function gridLine(x1, x2, y) {
    return svg("line", { x1, x2, y1: y, y2: y, class: "grid" });
  }

  function placeholder(width, height, text) {
    return svg("text", { x: width / 2, y: height / 2, class: "placeholder" }, text);
  }

  // 1, 2 or 5 times a power of ten, at or above `value`.
  function niceCeiling(value) {
    const power = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= value);
  }

  function metricChart(rounds, metric) {
    const width = 240;
    const height = 130;
    const margin = { top: 22, right: 24, bottom: 22, left: 24 };
    const points = rounds
      .map((round) => ({ round: round.number, value: round.metrics[metric.key] }))
      .filter((point) => typeof point.value === "number");
    const latest = points.length ? number(points[points.length - 1].value, metric.digits) : "-";

    const figure = el("figure", { class: "metric", "data-metric": metric.key });
    figure.append(el("figcaption", {}, `${metric.label}: `, el("strong", {}, latest)));
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": metric.label,
    });
    figure.append(chart);
    if (points.length === 0) {
      chart.append(placeholder(width, height, "no values yet"));
      return figure;
    }

    const values = points.map((point) => point.value);
    const low = Math.min(0, ...values);
    const high = Math.max(...values) > low ? Math.max(...values) : low + 1;
    const numbers = rounds.map((round) => round.number);
    const first = Math.min(...numbers);
    const span = Math.max(1, Math.max(...numbers) - first);
    const plotWidth = width - margin.left - margin.right;
    const plotHeight = height - margin.top - margin.bottom;
    const x = (round) => margin.left + ((round - first) / span) * plotWidth;
    const y = (value) => margin.top + (1 - (value - low) / (high - low)) * plotHeight;

    chart.append(gridLine(margin.left, width - margin.right, y(low)));
    const path = points.map((point, i) => `${i ? "L" : "M"}${x(point.round)},${y(point.value)}`);
    chart.append(svg("path", { d: path.join(" "), class: "line" }));
    for (const point of points) {
      const shown = number(point.value, metric.digits);
      const dot = svg("circle", { cx: x(point.round), cy: y(point.value), r: 3.5, class: "dot" });
      chart.append(
        tooltip(dot, `round ${point.round}: ${shown}`),
        svg("text", { x: x(point.round), y: y(point.value) - 7, class: "point-label" }, shown),
      );
    }
    for (const round of numbers) {
      chart.append(svg("text", { x: x(round), y: height - 5, class: "tick" }, round));
    }
    return figure;
  }

  function roundRow(round) {
    const metrics = round.metrics;
    const added = KINDS.reduce((sum, kind) => sum + round.added[kind], 0);
    const cells = [
      ["number", round.number],
      ["status", round.status],
      ["started_at", time(round.started_at)],
      ["finished_at", time(round.finished_at)],
      ["elapsed_s", number(round.elapsed_s, 1)],
      ["pool-positive", count(round.pool.positive)],
      ["pool-random", count(round.pool.random)],
      ["pool-hard", count(round.pool.hard)],
      ["added", added],
      ["ap", number(metrics.ap)],
      ["ap50", number(metrics.ap50)],
      ["fp_per_image", number(metrics.fp_per_image)],
      ["recall", number(metrics.recall)],
      ["lamr", number(metrics.lamr)],
      ["windows_per_s", number(metrics.windows_per_s, 0)],
      ["yield_per_1k", number(metrics.yield_per_1k, 2)],
    ];
    const row = el("tr", { "data-round": round.number });
    row.append(...cells.map(([field, text]) => el("td", { "data-field": field }, text)));
    row.cells[1].className = `status status-${round.status}`;
    return row;
  }

  // -------------------------------------------------------------------------------------------
  // Galleries

  async function renderGalleries(generation) {
    const hard = state.round === null
      ? null
      : getJSON(runUrl(`/hard-negatives?round=${state.round}&limit=${GALLERY_LIMIT}`));
    const missing = getJSON(runUrl(`/missing-labels?limit=${GALLERY_LIMIT}`));
    const [hardAnswer, missingAnswer] = await Promise.all([hard, missing]);
    if (generation !== state.generation) return;

    const empty = state.round === null
      ? "no rounds yet"
      : `round ${state.round} admitted no hard negatives`;
    fillGallery("gallery", hardAnswer ? hardAnswer.examples : [], empty);
    const threshold = number(missingAnswer.min_score, 2);
    $("missing-threshold").textContent = `(score ≥ ${threshold})`;
    const none = `no mined negative scored ${threshold} or more`;
    fillGallery("missing-labels", missingAnswer.examples, none);
  }

  function fillGallery(id, examples, emptyText) {
    const key = examples.map((example) => example.id).join(",");
    if (state.shown[id] === key && $(id).childElementCount > 0) return;
    state.shown[id] = key;
    if (examples.length === 0) {
      $(id).replaceChildren(el("p", { class: "empty" }, emptyText));
      return;
    }
    $(id).replaceChildren(...examples.map(card));
  }

  function card(example) {
    const box = example.box.map((v) => Math.round(v)).join(", ");
    const image = el("img", {
      class: "crop",
      src: example.crop_url,
      alt: `${example.kind} negative ${example.id} on ${example.file_name}`,
      title: `pool example ${example.id}, box [${box}] (xyxy px)`,
    });
    const figure = el("figure", { class: "card", "data-example": example.id });
    image.addEventListener("error", () => {
      figure.classList.add("broken");
      image.replaceWith(el("div", { class: "no-crop" }, "image unavailable"));
    });
    const name = el("div", { class: "file", title: example.file_name }, example.file_name);
    const facts = el(
      "div",
      { class: "facts" },
      el("span", { "data-field": "score" }, `score ${number(example.score)}`),
      el("span", { "data-field": "round" }, `round ${example.round}`),
    );
    // The random strategy admits its mined windows as kind "random": say so.
    const extra = [`loss ${number(example.loss)}`];
    if (example.kind !== "hard") extra.push(example.kind);
    if (example.times_remined > 0) extra.push(`re-mined ${example.times_remined}×`);
    const details = el("div", { class: "extra" }, extra.join(" · "));
    figure.append(image, el("figcaption", {}, name, facts, details));
    return figure;
  }

  document.addEventListener("DOMContentLoaded", init);
})();

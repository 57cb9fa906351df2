"use strict";
// The choropleth of the states: shapes, colour classes and legend, as plain SVG.
// The shapes are us-atlas's states already projected to Albers USA (Alaska and
// Hawaii as insets) in a 975×610 box, turned into GeoJSON by topojson-client; both
// are served by the app (server/dashboard.py), so no projection code is needed here.
// Loaded before dashboard.js, which calls window.StateMap.

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  // ColorBrewer YlGnBu, 5 classes: light = low, dark = high; colour-blind safe.
  const PALETTE = ["#ffffcc", "#a1dab4", "#41b6c4", "#2c7fb8", "#253494"];
  const NO_DATA = "#d9d9d9";

  // "M x,y L … Z" of every ring of a Polygon or MultiPolygon in planar coordinates.
  function pathOf(geometry) {
    const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
    return polygons.flat().map((ring) => "M" + ring.map(([x, y]) =>
      `${x.toFixed(1)},${y.toFixed(1)}`).join("L") + "Z").join("");
  }

  async function loadShapes() {
    const response = await fetch("/static/states-albers-10m.json");
    if (!response.ok) throw new Error("the map shapes did not load");
    const topology = await response.json();
    return topojson.feature(topology, topology.objects.states).features
      .map((f) => ({name: f.properties.name, d: pathOf(f.geometry)}));
  }

  // Five equal-width classes from the lowest to the highest value shown: the legend
  // reads left to right as the values rise, and a colour always means one range.
  function classify(values) {
    const known = values.filter((v) => v !== null && v !== undefined);
    const low = Math.min(...known);
    const high = Math.max(...known);
    const width = (high - low) / PALETTE.length;
    const classOf = (v) => (v === null || v === undefined ? -1
      : width === 0 ? 0 : Math.min(PALETTE.length - 1, Math.floor((v - low) / width)));
    const colorOf = (v) => (classOf(v) < 0 ? NO_DATA : PALETTE[classOf(v)]);
    const bins = known.length === 0 ? [] : PALETTE.map((color, i) => ({
      color, from: low + i * width, to: i === PALETTE.length - 1 ? high : low + (i + 1) * width,
    }));
    return {classOf, colorOf, bins};
  }

  function element(name, attributes) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    return node;
  }

  // One <path> per state, its value and colour in data attributes for tests and
  // tooltips (<title>); a click picks the state.
  function draw(svg, shapes, valueOf, colorOf, describe, selected, onPick) {
    svg.replaceChildren();
    for (const shape of shapes) {
      const value = valueOf(shape.name);
      const path = element("path", {
        d: shape.d, fill: colorOf(value), "data-state": shape.name,
        "data-value": value === null || value === undefined ? "" : String(value),
        class: shape.name === selected ? "state selected" : "state",
        tabindex: "0", role: "button", "aria-label": `${shape.name}: ${describe(value)}`,
      });
      const title = element("title", {});
      title.textContent = `${shape.name}: ${describe(value)}`;
      path.append(title);
      path.addEventListener("click", () => onPick(shape.name));
      path.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") onPick(shape.name);
      });
      svg.append(path);
    }
    // The selected state on top, so its outline is not hidden by its neighbours.
    const chosen = svg.querySelector("path.selected");
    if (chosen) svg.append(chosen);
  }

  function legend(container, bins, format, unit) {
    container.replaceChildren();
    for (const bin of bins) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.dataset.color = bin.color;
      swatch.style.background = bin.color;  // CSSOM, allowed by the CSP (no inline style)
      item.append(swatch, `${format(bin.from)}–${format(bin.to)}${unit}`);
      container.append(item);
    }
    const none = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.dataset.color = NO_DATA;
    swatch.style.background = NO_DATA;
    none.append(swatch, "no data");
    container.append(none);
  }

  window.StateMap = {loadShapes, classify, draw, legend, PALETTE, NO_DATA};
})();

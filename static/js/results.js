// Draws the comparison pages' charts with plotly.js (served from the installed plotly package).
// Each figure's data sits in a <script type="application/json"> next to its plot; htmx swaps in
// new ones when a filter changes, and htmx.onLoad draws them again. Without JavaScript the page
// still shows every table, and every chart's numbers are a CSV link away.
(function () {
  "use strict";

  function filename(plot) {
    var title = document.title.split(" · ")[0] || "chart";
    return (title + "-" + plot.dataset.chart).replace(/[^\w\u4e00-\u9fff.-]+/g, "-");
  }

  function config(plot) {
    return {
      responsive: true,
      displaylogo: false,
      toImageButtonOptions: { format: "png", filename: filename(plot), scale: 2 },
      modeBarButtonsToAdd: [{
        name: "downloadSvg",
        title: "Download SVG",
        icon: Plotly.Icons.disk,
        click: function (gd) { Plotly.downloadImage(gd, { format: "svg", filename: filename(plot) }); }
      }]
    };
  }

  function draw(plot) {
    var source = document.getElementById(plot.dataset.figure);
    if (!source || typeof Plotly === "undefined" || plot.dataset.started) return;
    plot.dataset.started = "true";
    var figure = JSON.parse(source.textContent);
    Plotly.newPlot(plot, figure.data, figure.layout, config(plot)).then(function () {
      plot.dataset.drawn = "true";
    });
    if (plot.dataset.drill) {
      plot.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        var key = point && point.customdata;
        if (!key || key.length !== 2) return;
        window.location.href = plot.dataset.drill + "task_type=" + encodeURIComponent(key[0]) +
          "&model=" + encodeURIComponent(key[1]);
      });
    }
  }

  function drawAll(root) {
    root.querySelectorAll(".plot[data-figure]").forEach(draw);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-download]");
    if (!button) return;
    var plot = document.querySelector('.plot[data-chart="' + button.dataset.target + '"]');
    if (plot && plot.dataset.drawn) {
      Plotly.downloadImage(plot, { format: button.dataset.download, filename: filename(plot) });
    }
  });

  function start() {
    drawAll(document);
    // Content htmx swaps in later (a filter or a sort) brings new figures.
    if (window.htmx) htmx.onLoad(drawAll);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

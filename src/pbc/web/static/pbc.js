// Draw the page's Vega-Lite charts with the vendored vega-embed: the page's main chart
// (#chart, its specification in #chart-spec) and every panel chart (an element with
// data-pbc-spec naming the script element that holds its specification), including those
// htmx brings in later (the dashboards' benchmark panels). Each specification is inline
// JSON made by the same code as the command line's charts.
(function () {
  function draw(root) {
    if (!window.vegaEmbed) {
      return;
    }
    var main = root.querySelector ? root.querySelector("#chart-spec") : null;
    var target = document.getElementById("chart");
    if (main && target && !target.dataset.drawn) {
      target.dataset.drawn = "1";
      window.vegaEmbed(target, JSON.parse(main.textContent), {actions: false});
    }
    var panels = root.querySelectorAll ? root.querySelectorAll("[data-pbc-spec]") : [];
    Array.prototype.forEach.call(panels, function (el) {
      var spec = document.getElementById(el.dataset.pbcSpec);
      if (spec && !el.dataset.drawn) {
        el.dataset.drawn = "1";
        window.vegaEmbed(el, JSON.parse(spec.textContent), {actions: false});
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function () { draw(document); });
})();

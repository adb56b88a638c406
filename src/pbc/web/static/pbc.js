// Draw the page's Vega-Lite chart (its specification is inline JSON, made by the same
// code as the CLI's charts) with the vendored vega-embed.
document.addEventListener("DOMContentLoaded", function () {
  var spec = document.getElementById("chart-spec");
  if (spec && window.vegaEmbed) {
    window.vegaEmbed("#chart", JSON.parse(spec.textContent), {actions: false});
  }
});

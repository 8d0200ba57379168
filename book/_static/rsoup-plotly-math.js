/* rsoup: TeX in plotly figure labels, with the book's own MathJax (no network).
 *
 * plotly.js typesets a label such as "$\lambda$" with window.MathJax (MathJax 3, SVG output),
 * but it draws each figure while the page is being parsed, before the deferred MathJax that
 * Sphinx adds has run, and Sphinx adds MathJax only to pages with equations. So, once the page
 * is parsed: if a figure has TeX in its labels, wait for MathJax (loading the local copy if the
 * page has none) and draw that figure again. window.rsoupPlotlyMath resolves to the number of
 * figures redrawn (the browser test waits on it).
 */
(function () {
  "use strict";
  var TEX = /[$][^$]+[$]/; // plotly.js treats a label holding $...$ as TeX
  var here = document.currentScript && document.currentScript.src;
  var mathjaxUrl = here ? here.replace(/[^/]*$/, "mathjax/tex-svg-full.js") : null; // mathjax_path

  function texFigures() {
    return Array.prototype.filter.call(document.querySelectorAll(".plotly-graph-div"), function (gd) {
      try {
        return TEX.test(JSON.stringify([gd.layout, gd.data]));
      } catch (err) {
        return false;
      }
    });
  }

  function mathjaxReady() {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) return mj.startup.promise;
    return new Promise(function (resolve, reject) {
      // No MathJax on this page: load ours, without typesetting the page (it has no equations).
      window.MathJax = { startup: { typeset: false } };
      var script = document.createElement("script");
      script.src = mathjaxUrl;
      script.onload = function () {
        window.MathJax.startup.promise.then(resolve, reject);
      };
      script.onerror = function () {
        reject(new Error("rsoup: could not load " + mathjaxUrl));
      };
      document.head.appendChild(script);
    });
  }

  window.rsoupPlotlyMath = new Promise(function (resolve) {
    document.addEventListener("DOMContentLoaded", resolve);
  }).then(function () {
    var figures = texFigures();
    if (!figures.length || !window.Plotly) return 0;
    return mathjaxReady().then(function () {
      return Promise.all(
        figures.map(function (gd) {
          return window.Plotly.newPlot(gd, gd.data, gd.layout, gd._context);
        })
      ).then(function () {
        return figures.length;
      });
    });
  });
})();

// Two fixes for the widgets that chapters embed as saved state. myst-nb renders them in the page with
// @jupyter-widgets/html-manager (embed-amd.js, loaded with RequireJS from jsDelivr; see _config.yml).
// _config.yml includes this file in every page before those scripts (html_js_files, priority 400).
// tests/test_site.py checks in Chromium that widget pages load with no error and no failed request.
(function () {
  "use strict";

  // 1. embed-amd.js fetches its Font Awesome files from the folder RequireJS says its module lives
  //    in, which without a path is the page's own folder (404s). RequireJS reads a `require` object
  //    defined before it loads as its configuration: name the folder embed-amd.js comes from.
  //    Keep the version the one of nb_ipywidgets_js in _config.yml (the test fails if they differ).
  if (typeof window.require === "undefined") {
    window.require = {
      paths: {
        "@jupyter-widgets/html-manager/dist":
          "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist",
      },
    };
  }

  // 2. @jupyter-widgets/base typesets widget labels with MathJax 2's MathJax.Hub.Queue, which throws
  //    under the MathJax 3 this site loads. Give MathJax 3 that one call. MathJax (a deferred
  //    script) has replaced window.MathJax by DOMContentLoaded; the widgets render later, on "load".
  document.addEventListener("DOMContentLoaded", function () {
    const mathjax = window.MathJax;
    if (!mathjax || !mathjax.version || mathjax.Hub) return;
    mathjax.Hub = {
      Queue: function (...jobs) {
        for (const job of jobs) {
          const element = Array.isArray(job) && job[0] === "Typeset" ? job[2] : null;
          if (element) {
            mathjax.startup.promise
              .then(() => mathjax.typesetPromise([element]))
              .catch((error) => console.warn("MathJax could not typeset a widget label", error));
          }
        }
      },
    };
  });
})();

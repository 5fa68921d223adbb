/* The book's own behaviour on top of sphinx-book-theme (loaded deferred on every page by
   _ext/bptt_site.py, before the theme's scripts run). */
(function () {
  "use strict";

  /* Navigation drawers. The theme renders its sidebar toggles twice: hidden copies in .bd-header come
     first, and the theme binds its handlers to the first .primary-toggle/.secondary-toggle only, so the
     visible buttons did nothing. Renaming the hidden copies makes the theme bind to the visible ones. */
  document.querySelectorAll(".bd-header .primary-toggle, .bd-header .secondary-toggle").forEach(function (b) {
    var hiddenClass = b.classList.contains("primary-toggle") ? "primary-toggle" : "secondary-toggle";
    b.classList.remove(hiddenClass);
    b.classList.add("bptt-unused-" + hiddenClass);
  });

  /* Display equations wider than their column scroll sideways (CSS draws the cue); such a box is
     focusable so that the keyboard can scroll it. Formulas are never tab stops otherwise. */
  function markWideEquations() {
    document.querySelectorAll('div.math mjx-container[display="true"]').forEach(function (c) {
      var wide = c.scrollWidth > c.clientWidth + 1;
      c.classList.toggle("bptt-scrolls", wide);
      if (wide) {
        c.setAttribute("tabindex", "0");
        c.setAttribute("role", "region");
        var eq = c.parentElement.id ? c.parentElement.id.replace(/^equation-/, "") : "";
        var number = c.parentElement.querySelector(".eqno");
        c.setAttribute("aria-label", "Equation " + (number ? number.textContent.replace(/[^\w().]/g, "") : eq) +
          ", scrolls sideways");
      } else if (c.classList.contains("bptt-scrolls") || c.getAttribute("role") === "region") {
        c.removeAttribute("tabindex");
        c.removeAttribute("role");
        c.removeAttribute("aria-label");
      }
    });
  }
  function whenTypeset(callback) {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(callback);
    } else {
      window.setTimeout(function () { whenTypeset(callback); }, 100);
    }
  }
  if (document.querySelector("div.math")) {
    whenTypeset(markWideEquations);
    var pending;
    window.addEventListener("resize", function () {
      window.clearTimeout(pending);
      pending = window.setTimeout(markWideEquations, 150);
    });
  }

  /* Tables wider than their column scroll sideways inside the theme's container. Striped rows hide a
     shadow, so the cue is a line of text above such a table; the container can take the keyboard. */
  function markWideTables() {
    document.querySelectorAll(".pst-scrollable-table-container").forEach(function (c) {
      var wide = c.scrollWidth > c.clientWidth + 1;
      var hint = c.previousElementSibling;
      var hasHint = hint && hint.classList.contains("bptt-scroll-hint");
      c.classList.toggle("bptt-scrolls", wide);
      if (wide && !hasHint) {
        hint = document.createElement("p");
        hint.className = "bptt-scroll-hint";
        hint.textContent = "This table is wider than the page: scroll it sideways \u2192";
        c.parentNode.insertBefore(hint, c);
        c.setAttribute("tabindex", "0");
        c.setAttribute("role", "region");
        c.setAttribute("aria-label", "Table, scrolls sideways");
      } else if (!wide && hasHint) {
        hint.remove();
        c.removeAttribute("role");
        c.removeAttribute("aria-label");
      }
    });
  }
  if (document.querySelector(".pst-scrollable-table-container")) {
    markWideTables();
    whenTypeset(markWideTables);
    var pendingTables;
    window.addEventListener("resize", function () {
      window.clearTimeout(pendingTables);
      pendingTables = window.setTimeout(markWideTables, 150);
    });
  }

  /* Solution toggles: a real name ("Solution to Exercise 3") instead of "Toggle hidden content". */
  function nameToggles() {
    document.querySelectorAll("button.toggle-button").forEach(function (button) {
      var title = button.closest(".admonition-title");
      var name = title ? title.textContent.replace(/\s+/g, " ").trim() : "";
      if (name) button.setAttribute("aria-label", name);
    });
  }

  /* Search results: the snippet under each hit shows formulas without their TeX markup. */
  var GREEK = {alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε", eta: "η",
    theta: "θ", lambda: "λ", mu: "μ", pi: "π", rho: "ρ", sigma: "σ", tau: "τ", phi: "φ", varphi: "φ",
    psi: "ψ", omega: "ω", Delta: "Δ", Sigma: "Σ", Phi: "Φ", partial: "∂", nabla: "∇", sum: "Σ",
    prod: "Π", infty: "∞", top: "ᵀ", cdot: "·", times: "×", le: "≤", leq: "≤", ge: "≥", geq: "≥",
    approx: "≈", ne: "≠", neq: "≠", to: "→", in: "∈", ell: "ℓ", odot: "⊙", otimes: "⊗", ldots: "…",
    dots: "…", cdots: "⋯"};
  function plainTeX(tex) {
    return tex
      .replace(/^\\\(|\\\)$/g, "").replace(/^\\\[|\\\]$/g, "").replace(/^\$+|\$+$/g, "")
      .replace(/\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, "$1/$2")
      .replace(/\\begin\{\w+\*?\}|\\end\{\w+\*?\}|\\label\{[^}]*\}|\\(left|right|big|Big|bigg|Bigg)\b/g, "")
      .replace(/\\([A-Za-z]+)/g, function (m, name) { return GREEK[name] !== undefined ? GREEK[name] : ""; })
      .replace(/[{}]/g, "")
      .replace(/\\[,;:!\\ ]|&/g, " ")
      .replace(/\s*([_^])\s*/g, "$1")
      .replace(/\s+/g, " ").trim();
  }
  function cleanSearchSnippets() {
    if (typeof Search === "undefined" || typeof Search.htmlToText !== "function" || Search.bpttPlain) return;
    var original = Search.htmlToText;
    Search.htmlToText = function (htmlString, anchor) {
      var doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(".math").forEach(function (m) { m.textContent = " " + plainTeX(m.textContent) + " "; });
      return original.call(this, doc.documentElement.outerHTML, anchor);
    };
    Search.bpttPlain = true;
  }

  /* Kernel-free sliders (bptt_viz.frames_html): every frame is a PNG file next to the first one. */
  function setUpSweep(figure) {
    var frames = JSON.parse(figure.dataset.frames), strides = JSON.parse(figure.dataset.strides);
    var img = figure.querySelector("img.bptt-frame");
    var folder = img.getAttribute("src").replace(/[^\/]*$/, "");
    var controls = figure.querySelectorAll(".bptt-control");
    function chosen(control) {
      var range = control.querySelector('input[type="range"]');
      if (range) return +range.value;
      var checked = control.querySelector("input[type=radio]:checked");
      return checked ? +checked.value : 0;
    }
    function show() {
      var index = 0;
      controls.forEach(function (control, k) {
        var i = chosen(control), labels = JSON.parse(control.dataset.labels);
        index += strides[k] * i;
        var range = control.querySelector('input[type="range"]');
        if (range) {
          range.setAttribute("aria-valuetext", labels[i]);
          control.querySelector("output").textContent = labels[i];
        }
      });
      img.setAttribute("src", folder + frames[index]);
    }
    figure.addEventListener("input", show);
    figure.addEventListener("change", show);
  }

  function ready() {
    nameToggles();
    cleanSearchSnippets();
    document.querySelectorAll("figure.bptt-sweep[data-frames]").forEach(setUpSweep);
  }
  /* A deferred script runs before DOMContentLoaded, which is when togglebutton.js adds its buttons. */
  if (document.readyState === "complete") {
    ready();
  } else {
    document.addEventListener("DOMContentLoaded", ready);
  }
})();

// Pavedroad Pipelines: a run's selected job's log, live over server-sent events, with
// the colours its programs printed; statuses of the run, its jobs and steps updated in
// place. The page works without this file: it refreshes itself until the run ends.
(function () {
  "use strict";

  var STATUSES = ["queued", "waiting", "running", "succeeded", "failed", "cancelled", "skipped"];
  var FINISHED = ["succeeded", "failed", "cancelled", "skipped"];
  var SYMBOLS = {
    succeeded: "\u2713", failed: "\u2717", running: "\u25cf", queued: "\u25cb",
    waiting: "\u25cb", cancelled: "\u2298", skipped: "\u2013"
  };
  var MARKS = [["##[error]", "error"], ["##[warning]", "warning"], ["##[notice]", "notice"]];
  // Escape sequences, as views.AnsiRenderer reads them: CSI (ESC [ parameters final),
  // of which SGR ("m") sets colours; OSC, character-set choices and one-letter ones are
  // dropped.
  var ESCAPE = /\x1b(?:\[([0-9;?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78DEHMc])/g;
  var POLL_MS = 2000;

  function each(list, fn) { Array.prototype.forEach.call(list, fn); }
  function make(tag, className, text) {
    var element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }
  function finished(status) { return FINISHED.indexOf(status) >= 0; }

  // -- the log: text to spans with classes, never HTML ----------------------------------------

  // Continues a step's log where the server's rendering (views.AnsiRenderer) stopped: the
  // state it ended in is on the <pre> as data attributes.
  function AnsiWriter(pre) {
    this.pre = pre;
    this.bold = pre.getAttribute("data-bold") === "1";
    var colour = parseInt(pre.getAttribute("data-colour") || "", 10);
    this.colour = isNaN(colour) ? null : colour;
    this.lineStart = pre.getAttribute("data-line-start") !== "" || !pre.hasChildNodes();
    this.lineClass = pre.getAttribute("data-line-class") || "";
    this.pending = "";
  }

  AnsiWriter.prototype.classes = function () {
    var names = this.lineClass ? [this.lineClass] : [];
    if (this.bold) names.push("ansi-bold");
    if (this.colour !== null) names.push("ansi-" + this.colour);
    return names.join(" ");
  };

  AnsiWriter.prototype.append = function (text, classes) {
    if (!text) return;
    if (classes) this.pre.appendChild(make("span", classes, text));
    else this.pre.appendChild(document.createTextNode(text));
  };

  AnsiWriter.prototype.sgr = function (params) {
    var parts = params ? params.split(";") : ["0"];
    for (var i = 0; i < parts.length; i++) {
      var code = /^\d+$/.test(parts[i]) ? parseInt(parts[i], 10) : -1;
      if (code === 0) { this.bold = false; this.colour = null; }
      else if (code === 1) this.bold = true;
      else if (code === 22) this.bold = false;
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) this.colour = code;
      else if (code === 39) this.colour = null;
    }
  };

  AnsiWriter.prototype.text = function (text, time) {
    var pieces = text.replace(/\x1b/g, "").split(/\r\n|\r|\n/);
    for (var i = 0; i < pieces.length; i++) {
      if (i > 0) {
        this.append("\n");
        this.lineStart = true;
        this.lineClass = "";
      }
      var piece = pieces[i];
      if (!piece) continue;
      if (this.lineStart) {
        this.append(time, "log-time");
        this.append(" ");
        this.lineStart = false;
        for (var m = 0; m < MARKS.length; m++) {
          if (piece.indexOf(MARKS[m][0]) === 0) {
            this.lineClass = "log-" + MARKS[m][1];
            this.append(MARKS[m][1], "log-mark log-mark-" + MARKS[m][1]);
            this.append(" ");
            piece = piece.slice(MARKS[m][0].length);
            break;
          }
        }
      }
      this.append(piece, this.classes());
    }
  };

  AnsiWriter.prototype.write = function (text, time) {
    text = this.pending + text;
    this.pending = "";
    var matches = [];
    var match;
    ESCAPE.lastIndex = 0;
    while ((match = ESCAPE.exec(text)) !== null) matches.push(match);
    var escape = text.lastIndexOf("\x1b");
    var last = matches[matches.length - 1];
    var partial = !last || last.index + last[0].length <= escape;  // it starts no whole sequence
    if (escape >= 0 && text.length - escape < 16 && partial) {  // the rest is in the next chunk
      this.pending = text.slice(escape);
      text = text.slice(0, escape);
    }
    var position = 0;
    for (var i = 0; i < matches.length; i++) {
      this.text(text.slice(position, matches[i].index), time);
      if (matches[i][2] === "m") this.sgr(matches[i][1]);
      position = matches[i].index + matches[i][0].length;
    }
    this.text(text.slice(position), time);
  };

  // -- statuses ------------------------------------------------------------------------------

  function setBadge(badge, status) {
    if (!badge || !status) return;
    badge.className = "pill pl-status pl-status-" + status;
    badge.setAttribute("data-status", status);
    badge.textContent = status;
  }

  function duration(from, to) {
    if (!from) return "";
    var seconds = ((to ? Date.parse(to) : Date.now()) - Date.parse(from)) / 1000;
    if (!isFinite(seconds) || seconds < 0) return "";
    if (seconds < 10) return seconds.toFixed(1) + " s";
    if (seconds < 60) return Math.floor(seconds) + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + Math.floor(seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function jobDuration(job) {
    return ["waiting", "queued", "skipped"].indexOf(job.status) >= 0 ? "" : duration(job.startedAt, job.finishedAt);
  }

  function updateJob(job) {
    each(document.querySelectorAll("[data-job=\"" + job.id + "\"]"), function (element) {
      if (element.tagName.toLowerCase() === "g") {  // the graph's box
        STATUSES.forEach(function (status) { element.classList.remove("st-" + status); });
        element.classList.add("st-" + job.status);
        element.setAttribute("data-status", job.status);
        var symbol = element.querySelector("[data-symbol]");
        if (symbol) symbol.textContent = SYMBOLS[job.status] || "?";
        var detail = element.querySelector("[data-detail]");
        if (detail) detail.textContent = jobDuration(job) || (job.status === "waiting" || job.status === "queued" ? job.status : "");
        return;
      }
      setBadge(element.querySelector("[data-job-status] > .pl-status"), job.status);
      var time = element.querySelector("[data-job-duration]");
      if (time) time.textContent = jobDuration(job);
    });
  }

  function updateSteps(job, log) {
    if (!log) return;
    job.steps.forEach(function (step) {
      var section = log.querySelector("[data-section=\"step-" + step.index + "\"]");
      if (!section) return;
      setBadge(section.querySelector("[data-step-status] > .pl-status"), step.status);
      var time = section.querySelector("[data-step-duration]");
      if (time && ["waiting", "skipped"].indexOf(step.status) < 0) {
        time.textContent = duration(step.startedAt, step.finishedAt);
      }
      if (step.status === "running" || step.status === "failed") section.open = true;
      var none = section.querySelector("[data-no-output]");
      if (none && step.status !== "waiting" && !section.querySelector("[data-log]").hasChildNodes()) {
        none.textContent = step.status === "skipped" ? "Skipped." : step.status === "running" ? "Running\u2026" : "No output.";
      }
    });
  }

  // -- the page ------------------------------------------------------------------------------

  function setupRun(root) {
    var log = root.querySelector("[data-pipeline-log]");
    var selected = root.getAttribute("data-selected-job");
    var follow = root.getAttribute("data-follow") === "true";
    var runDone = root.getAttribute("data-finished") === "true";
    var streamDone = !log || log.getAttribute("data-finished") === "true";
    var leaving = false;

    function leave(url) {
      if (leaving) return;
      leaving = true;
      setTimeout(function () { if (url) window.location.replace(url); else window.location.reload(); }, 400);
    }

    // The selected job's log, from the chunk after the last one the page holds.
    if (log && !streamDone && window.EventSource) {
      var writers = {};
      var lastId = parseInt(log.getAttribute("data-after") || "0", 10) || 0;
      var source = new EventSource(log.getAttribute("data-stream-url") + "?after=" + lastId);

      var sectionFor = function (step) {
        var key = "step-" + step;
        if (step < 0) {
          var stepsHaveLog = Array.prototype.some.call(
            log.querySelectorAll("[data-section^=\"step-\"] [data-log]"),
            function (pre) { return pre.hasChildNodes(); });
          key = stepsHaveLog ? "complete" : "setup";
        }
        var section = log.querySelector("[data-section=\"" + key + "\"]");
        if (!section) {  // a step the page did not know (planned after it rendered)
          section = make("details", "pl-step");
          section.setAttribute("data-section", key);
          section.setAttribute("data-testid", "log-section");
          var summary = make("summary");
          summary.appendChild(make("span", "step-name", "Step " + (step + 1)));
          section.appendChild(summary);
          var pre = make("pre", "code pl-step-log");
          pre.setAttribute("data-log", "");
          pre.setAttribute("data-testid", "step-log");
          section.appendChild(pre);
          log.insertBefore(section, log.querySelector("[data-section=complete]"));
        }
        return section;
      };

      source.addEventListener("log", function (message) {
        var id = parseInt(message.lastEventId, 10);
        if (id && id <= lastId) return;  // seen already (a reconnect starts over)
        var chunk;
        try { chunk = JSON.parse(message.data); } catch (e) { return; }
        if (id) lastId = id;
        var section = sectionFor(chunk.step);
        var pre = section.querySelector("[data-log]");
        var key = section.getAttribute("data-section");
        if (!writers[key]) writers[key] = new AnsiWriter(pre);
        var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
        writers[key].write(String(chunk.text || ""), String(chunk.at || "").slice(11, 19));
        section.hidden = false;
        section.open = true;
        var none = section.querySelector("[data-no-output]");
        if (none) none.remove();
        var waiting = log.querySelector("[data-log-waiting]");
        if (waiting) waiting.remove();
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      });
      source.addEventListener("end", function (message) {
        streamDone = true;
        source.close();
        var end;
        try { end = JSON.parse(message.data); } catch (e) { end = {}; }
        if (end.status) setBadge(root.querySelector("[data-testid=job-title] .pl-status"), end.status);
        poll();
      });
    }

    // The run, its jobs and the selected job's steps, until the run ends.
    function poll() {
      if (runDone || leaving) return;
      fetch(root.getAttribute("data-run-url"), {
        credentials: "same-origin", headers: { "Accept": "application/json" }
      }).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(function (run) {
        if (!run) return;
        setBadge(root.querySelector("[data-run-status] > .pl-status"), run.status);
        (run.jobs || []).forEach(updateJob);
        var current = (run.jobs || []).filter(function (job) { return job.id === selected; })[0];
        if (current) {
          updateSteps(current, log);
          setBadge(root.querySelector("[data-testid=job-title] .pl-status"), current.status);
        }
        if (finished(run.status)) {
          runDone = true;
          leave(null);  // the page shows the results, artifacts and release
          return;
        }
        // Following the run: once this job has ended, show the one running now.
        if (follow && current && finished(current.status) && streamDone) {
          var next = (run.jobs || []).filter(function (job) { return job.status === "running"; })[0];
          if (next) leave(window.location.pathname + "?job=" + encodeURIComponent(next.id) + "&follow=1#job");
        }
      }).catch(function () { /* the next poll tries again */ });
    }

    if (!runDone) {
      poll();
      setInterval(poll, POLL_MS);
    }
  }

  var root = document.querySelector("[data-run]");
  if (root) setupRun(root);
})();

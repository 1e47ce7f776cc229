// Pavedroad Create pages: a template's form as a wizard, a task's live log.
// Both pages work without this file: the form posts to a review page, the task page
// refreshes itself.
(function () {
  "use strict";

  var STATUS_LABELS = {
    open: "queued", processing: "running", completed: "completed", failed: "failed",
    cancelled: "cancelled", pending: "pending", skipped: "skipped"
  };
  var SECRET_MASK = "\u2022\u2022\u2022\u2022";

  function each(list, fn) { Array.prototype.forEach.call(list, fn); }
  function make(tag, className, text) {
    var element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }

  // -- answers, read as the server reads them (views.read_answers) ---------------------------

  function scalar(type, text) {
    text = text.trim();
    if (type === "integer" || type === "number") {
      if (/^[+-]?\d{1,15}$/.test(text)) return parseInt(text, 10);
      var number = Number(text);
      if (text === "" || !isFinite(number)) return text;
      if (type === "integer") return Number.isInteger(number) ? number : text;
      return number;
    }
    if (type === "boolean" && /^(true|false)$/i.test(text)) return text.toLowerCase() === "true";
    return text;
  }

  function typed(element) {
    try { return JSON.parse(element.getAttribute("data-value")); } catch (e) { return element.value; }
  }

  function readField(field) {
    var kind = field.getAttribute("data-kind");
    var control;
    if (kind === "boolean") {
      control = field.querySelector("input[type=checkbox]");
      return control ? control.checked : undefined;
    }
    if (kind === "multi") {
      return Array.prototype.map.call(field.querySelectorAll("input:checked"), typed);
    }
    if (kind === "enum") {
      control = field.querySelector("select");
      if (control) {
        var option = control.options[control.selectedIndex];
        return option && option.value !== "" ? typed(option) : undefined;
      }
      control = field.querySelector("input:checked");
      return control ? typed(control) : undefined;
    }
    if (kind === "repo") {
      var owner = field.querySelector("[data-part=owner]").value.trim();
      var repo = field.querySelector("[data-part=repo]").value.trim();
      if (!repo) return undefined;
      return field.getAttribute("data-host") + "?owner=" + encodeURIComponent(owner) +
        "&repo=" + encodeURIComponent(repo);
    }
    control = field.querySelector("input, textarea, select");
    if (!control || !control.value.trim()) return undefined;
    var text = control.value.replace(/\r\n/g, "\n");
    if (kind === "lines") {
      var itemType = field.getAttribute("data-item");
      return text.split("\n").filter(function (line) { return line.trim(); })
        .map(function (line) { return scalar(itemType, line); });
    }
    if (kind === "json") {
      try { return JSON.parse(text); } catch (e) { return text; }
    }
    if (kind === "integer" || kind === "number") return scalar(kind, text);
    if (kind === "hidden") return scalar(field.getAttribute("data-type"), text);
    return text;
  }

  // What only the form can tell (views.read_answers says the same on the server).
  function formProblems(form) {
    var problems = {};
    each(form.querySelectorAll(".sc-field[data-kind=repo]"), function (field) {
      var owner = field.querySelector("[data-part=owner]").value.trim();
      var repo = field.querySelector("[data-part=repo]").value.trim();
      if (repo && !owner) problems[field.getAttribute("data-path")] = ["choose the repository's owner"];
    });
    each(form.querySelectorAll(".sc-field[data-kind=json]"), function (field) {
      var text = field.querySelector("textarea").value;
      if (!text.trim()) return;
      try { JSON.parse(text); } catch (e) {
        problems[field.getAttribute("data-path")] = ["is not valid JSON"];
      }
    });
    return problems;
  }

  function setPath(target, path, value) {
    var parts = path.split(".");
    var holder = target;
    for (var i = 0; i < parts.length - 1; i++) {
      if (typeof holder[parts[i]] !== "object" || holder[parts[i]] === null) holder[parts[i]] = {};
      holder = holder[parts[i]];
    }
    holder[parts[parts.length - 1]] = value;
  }

  function collect(form) {
    var values = {};
    each(form.querySelectorAll(".sc-field[data-kind]"), function (field) {
      var value = readField(field);
      if (value !== undefined) setPath(values, field.getAttribute("data-path"), value);
    });
    return values;
  }

  // -- the wizard ----------------------------------------------------------------------------

  function textWithout(element, selector) {
    var copy = element.cloneNode(true);
    each(copy.querySelectorAll(selector), function (node) { node.remove(); });
    return copy.textContent.replace(/\s+/g, " ").trim();
  }

  function labelOf(field) {
    var own = field.querySelector(":scope > label, :scope > legend");
    var label = own ? textWithout(own, ".required, .visually-hidden, input") : field.getAttribute("data-path");
    var parent = field.parentElement && field.parentElement.closest(".sc-object");
    while (parent) {
      label = textWithout(parent.querySelector(":scope > legend"), ".required, .visually-hidden") + " \u203a " + label;
      parent = parent.parentElement && parent.parentElement.closest(".sc-object");
    }
    return label;
  }

  // An answer as the review shows it; "" when none was given.
  function displayOf(field) {
    var kind = field.getAttribute("data-kind");
    if (field.getAttribute("data-secret")) {
      return field.querySelector("input").value ? SECRET_MASK : "";
    }
    if (kind === "boolean") return field.querySelector("input").checked ? "Yes" : "No";
    if (kind === "repo") {
      var repo = field.querySelector("[data-part=repo]").value.trim();
      if (!repo) return "";
      return field.querySelector("[data-part=owner]").value.trim() + "/" + repo + " on " +
        field.getAttribute("data-host");
    }
    if (kind === "multi" || (kind === "enum" && !field.querySelector("select"))) {
      return Array.prototype.map.call(field.querySelectorAll("input:checked"), function (input) {
        return input.parentElement.textContent.trim();
      }).join(", ");
    }
    var select = field.querySelector("select");
    if (select) {
      var option = select.options[select.selectedIndex];
      return option && option.value !== "" ? option.textContent.trim() : "";
    }
    var control = field.querySelector("input, textarea");
    if (!control) return "";
    if (kind === "lines") {
      return control.value.split(/\r?\n/).filter(function (l) { return l.trim(); }).join(", ");
    }
    return control.value;
  }

  function errorElement(field) {
    return field.querySelector(":scope > .field-error");
  }

  function controlOf(field) {
    if (field.tagName === "FIELDSET" && field.getAttribute("data-kind") !== "repo") return field;
    return field.querySelector("[data-part=repo]") ||
      field.querySelector("input:not([type=hidden]), select, textarea") || field;
  }

  function clearErrors(scope) {
    each(scope.querySelectorAll("[data-path]"), function (field) {
      var error = errorElement(field);
      if (!error) return;
      error.hidden = true;
      error.textContent = "";
      var control = controlOf(field);
      control.removeAttribute("aria-invalid");
      var ids = (control.getAttribute("aria-describedby") || "").split(" ")
        .filter(function (id) { return id && id !== error.id; });
      if (ids.length) control.setAttribute("aria-describedby", ids.join(" "));
      else control.removeAttribute("aria-describedby");
    });
  }

  // The field on the page an error path belongs to: its own, or an array's for "tags[1]".
  function fieldFor(page, path) {
    var best = null;
    each(page.querySelectorAll("[data-path]"), function (field) {
      var own = field.getAttribute("data-path");
      var matches = path === own ||
        (field.getAttribute("data-kind") !== "object" && path.indexOf(own + "[") === 0);
      if (matches && (!best || own.length > best.getAttribute("data-path").length)) best = field;
    });
    return best;
  }

  function errorsOn(page, errors) {
    var found = [];
    Object.keys(errors).forEach(function (path) {
      var field = path ? fieldFor(page, path) : null;
      if (!field) return;
      var known = found.filter(function (pair) { return pair[0] === field; })[0];
      if (known) known[1] = known[1].concat(errors[path]);
      else found.push([field, errors[path]]);
    });
    return found;
  }

  function showErrors(found) {
    found.forEach(function (pair) {
      var error = errorElement(pair[0]);
      var control = controlOf(pair[0]);
      if (error) {
        error.textContent = pair[1].join("; ");
        error.hidden = false;
        var ids = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
        if (ids.indexOf(error.id) < 0) ids.push(error.id);
        control.setAttribute("aria-describedby", ids.join(" "));
      }
      control.setAttribute("aria-invalid", "true");
    });
    if (found.length) {
      var first = controlOf(found[0][0]);
      if (first.tagName === "FIELDSET") first = first.querySelector("input, select, textarea") || first;
      first.focus();
    }
  }

  function setupWizard(form) {
    var pages = Array.prototype.slice.call(form.querySelectorAll(".sc-page"));
    if (!pages.length) return;
    var token = (form.querySelector("input[name=csrf_token]") || {}).value || "";
    var validateUrl = form.getAttribute("data-validate-url");
    var summary = document.querySelector(".error-summary");
    var serverActions = form.querySelector("[data-actions]");
    var current = 0;
    var busy = false;
    var submitting = false;

    form.noValidate = true;
    form.classList.add("is-wizard");
    if (serverActions) serverActions.hidden = true;

    var progress = make("ol", "sc-steps");
    progress.setAttribute("aria-label", "Steps");
    pages.map(function (page) { return page.getAttribute("data-title"); }).concat(["Review"])
      .forEach(function (title, index) {
        var item = make("li", "", "");
        item.appendChild(make("span", "sc-step-number", String(index + 1)));
        item.appendChild(document.createTextNode(" " + title));
        progress.appendChild(item);
      });
    form.insertBefore(progress, pages[0]);

    var review = make("section", "sc-review");
    review.setAttribute("data-testid", "review");
    review.setAttribute("tabindex", "-1");
    review.hidden = true;
    form.insertBefore(review, serverActions);

    var nav = make("div", "sc-actions sc-nav");
    var back = make("button", "button", "Back");
    back.type = "button";
    back.setAttribute("data-testid", "back-button");
    var next = make("button", "button primary", "Next");
    next.type = "button";
    next.setAttribute("data-testid", "next-button");
    var create = make("button", "button primary", "Create");
    create.type = "submit";
    create.name = "action";
    create.value = "create";
    create.setAttribute("data-testid", "create-button");
    var dry = make("button", "button", "Dry run");
    dry.type = "submit";
    dry.name = "action";
    dry.value = "dry-run";
    dry.title = "Render the template without creating anything";
    dry.setAttribute("data-testid", "dry-run-button");
    var note = make("span", "muted small sc-note");
    note.setAttribute("role", "status");
    [back, next, create, dry, note].forEach(function (node) { nav.appendChild(node); });
    form.appendChild(nav);

    function show(index) {
      current = index;
      pages.forEach(function (page, i) { page.hidden = i !== index; });
      review.hidden = index !== pages.length;
      back.hidden = index === 0;
      next.hidden = index === pages.length;
      create.hidden = dry.hidden = index !== pages.length;
      each(progress.children, function (item, i) {
        item.className = i === index ? "is-current" : i < index ? "is-done" : "";
        if (i === index) item.setAttribute("aria-current", "step");
        else item.removeAttribute("aria-current");
      });
    }

    function focusPage(index) {
      if (index === pages.length) { review.focus(); return; }
      var target = pages[index].querySelector("input:not([type=hidden]), select, textarea");
      if (target) target.focus();
    }

    function buildReview(formErrors) {
      review.textContent = "";
      review.appendChild(make("h2", "", "Review"));
      review.appendChild(make("p", "muted", "Check your answers. Nothing is created until you press Create."));
      if (formErrors.length) {
        var alert = make("p", "alert bad small", formErrors.join("; "));
        alert.setAttribute("role", "alert");
        review.appendChild(alert);
      }
      pages.forEach(function (page) {
        var section = make("section", "sc-review-section");
        section.appendChild(make("h3", "", page.getAttribute("data-title")));
        var list = make("dl", "review-list");
        each(page.querySelectorAll(".sc-field[data-kind]"), function (field) {
          if (field.getAttribute("data-kind") === "hidden") return;
          var row = make("div");
          row.setAttribute("data-testid", "review-row");
          row.appendChild(make("dt", "", labelOf(field)));
          var value = displayOf(field);
          row.appendChild(value ? make("dd", "", value) : make("dd", "muted", "not given"));
          list.appendChild(row);
        });
        section.appendChild(list);
        review.appendChild(section);
      });
    }

    function validate() {
      return fetch(validateUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": token },
        body: JSON.stringify({ values: collect(form) })
      }).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(function (body) {
        return body && body.errors ? body.errors : body ? {} : null;
      }).catch(function () { return null; });
    }

    function goNext() {
      if (busy || current >= pages.length) return;
      busy = true;
      next.disabled = true;
      note.textContent = "Checking\u2026";
      validate().then(function (errors) {
        busy = false;
        next.disabled = false;
        note.textContent = "";
        if (summary) summary.hidden = true;
        if (errors === null) {
          note.textContent = "The answers could not be checked now; they are checked again when you create.";
          errors = {};
        }
        var local = formProblems(form);
        Object.keys(local).forEach(function (path) {
          errors[path] = (errors[path] || []).concat(local[path]);
        });
        var page = pages[current];
        clearErrors(page);
        var found = errorsOn(page, errors);
        if (found.length) { showErrors(found); return; }
        if (current === pages.length - 1) {
          for (var i = 0; i < pages.length - 1; i++) {
            var earlier = errorsOn(pages[i], errors);
            if (earlier.length) { show(i); showErrors(earlier); return; }
          }
          buildReview(errors[""] || []);
        }
        show(current + 1);
        focusPage(current);
      });
    }

    next.addEventListener("click", goNext);
    back.addEventListener("click", function () {
      if (current > 0) { show(current - 1); focusPage(current); }
    });
    form.addEventListener("submit", function (event) {
      if (current < pages.length || submitting) {
        event.preventDefault();  // Enter in a field means Next
        goNext();
        return;
      }
      submitting = true;
      note.textContent = event.submitter === dry ? "Starting the dry run\u2026" : "Creating\u2026";
    });

    // Back from the next page (the browser's cache keeps this one as it was): the
    // form may be sent again.
    window.addEventListener("pageshow", function () { submitting = false; note.textContent = ""; });

    var start = pages.findIndex(function (page) { return page.hasAttribute("data-has-errors"); });
    show(start < 0 ? 0 : start);
  }

  // -- a task's live log -----------------------------------------------------------------------

  function setBadge(badge, status) {
    if (!badge) return;
    badge.className = "pill task-status task-status-" + status;
    badge.setAttribute("data-status", status);
    badge.textContent = STATUS_LABELS[status] || status;
  }

  function duration(from, to) {
    var seconds = (Date.parse(to) - Date.parse(from)) / 1000;
    if (!isFinite(seconds) || seconds < 0) return "";
    return seconds < 60 ? seconds.toFixed(1) + " s" : Math.floor(seconds / 60) + " min " + Math.floor(seconds % 60) + " s";
  }

  function setupTask(root) {
    if (root.getAttribute("data-finished") === "true" || !window.EventSource) return;
    var log = root.querySelector("[data-log]");
    var waiting = root.querySelector("[data-log-empty]");
    var steps = root.querySelector(".task-steps");
    var header = document.querySelector("[data-testid=task-title] [data-testid=task-status]");
    var lastId = parseInt(root.getAttribute("data-last-event") || "0", 10) || 0;
    var source = new EventSource(root.getAttribute("data-stream-url") + "?after=" + lastId);
    var done = false;

    function read(message) {
      var id = parseInt(message.lastEventId, 10);
      if (id && id <= lastId) return null;  // seen already (a reconnect starts over)
      if (id) lastId = id;
      try { return JSON.parse(message.data); } catch (e) { return null; }
    }

    function appendLine(event) {
      var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
      var line = make("span", "log-line");
      line.setAttribute("data-id", String(event.id));
      line.appendChild(make("span", "log-time", (event.at || "").slice(11, 19)));
      line.appendChild(document.createTextNode(" "));
      if (event.step) {
        line.appendChild(make("span", "log-step", "[" + event.step + "]"));
        line.appendChild(document.createTextNode(" "));
      }
      line.appendChild(document.createTextNode(String((event.body || {}).message || "")));
      log.appendChild(line);
      if (waiting) { waiting.remove(); waiting = null; }
      if (atBottom) log.scrollTop = log.scrollHeight;
    }

    function stepItem(event) {
      var item = null;
      each(steps ? steps.children : [], function (li) {
        if (li.getAttribute("data-step") === event.step) item = li;
      });
      if (item || !steps) return item;
      item = make("li");
      item.setAttribute("data-step", event.step);
      item.setAttribute("data-testid", "task-step");
      item.appendChild(make("span", "step-name", (event.body || {}).name || event.step));
      var time = make("span", "step-duration muted small");
      time.setAttribute("data-step-duration", "");
      item.appendChild(time);
      var holder = make("span");
      holder.setAttribute("data-step-status", "");
      var badge = make("span");
      badge.setAttribute("data-testid", "step-status");
      holder.appendChild(badge);
      item.appendChild(holder);
      steps.appendChild(item);
      return item;
    }

    function updateStep(event) {
      var item = stepItem(event);
      if (!item) return;
      var status = (event.body || {}).status || "pending";
      setBadge(item.querySelector("[data-step-status] > span"), status);
      if (status === "processing") item.setAttribute("data-started", event.at);
      else if (item.getAttribute("data-started")) {
        item.querySelector("[data-step-duration]").textContent = duration(item.getAttribute("data-started"), event.at);
      }
    }

    source.addEventListener("log", function (message) {
      var event = read(message);
      if (event) appendLine(event);
    });
    source.addEventListener("step", function (message) {
      var event = read(message);
      if (event) updateStep(event);
    });
    source.addEventListener("status", function (message) {
      var event = read(message);
      if (event) setBadge(header, (event.body || {}).status);
    });
    source.addEventListener("completion", function (message) {
      var event = read(message);
      done = true;
      source.close();
      if (event) setBadge(header, (event.body || {}).status);
      // the page shows the output and the final state
      setTimeout(function () { window.location.reload(); }, 400);
    });
    source.addEventListener("error", function () {
      if (!done && source.readyState === EventSource.CLOSED) {
        setTimeout(function () { window.location.reload(); }, 2000);
      }
    });
  }

  var form = document.querySelector("form[data-wizard]");
  if (form) setupWizard(form);
  var task = document.querySelector("[data-task]");
  if (task) setupTask(task);
})();

// An agent's change form: choosing a backend hides the settings it has no use for and offers
// only its models and voices. The server judges the form by the backend posted either way
// (agents.admin.AgentForm ignores a GPT-Live agent's Realtime API settings): this only spares
// staff the fields that would be ignored. Data from the page's json_script block
// (agents.admin.backends_for_script); no inline script.
(function () {
  "use strict";

  const root = document.getElementById("bo-agent-fields");
  const data = document.getElementById("bo-agent-backends");
  const backend = document.getElementById("id_backend");
  if (!root || !data || !backend) {
    return; // a read-only view: nothing to choose
  }
  const config = JSON.parse(data.textContent);
  const model = document.getElementById("id_model");
  const voice = document.getElementById("id_voice");

  // Offer only `allowed` (the option selected stays visible until it is changed, so an odd
  // stored value is shown, and refused on save, rather than replaced silently).
  function restrict(select, allowed, fallback, switching) {
    if (!select) {
      return;
    }
    if (switching && !allowed.includes(select.value)) {
      select.value = fallback;
    }
    for (const option of select.options) {
      const off = !allowed.includes(option.value) && option.value !== select.value;
      option.hidden = off;
      option.disabled = off;
    }
    for (const group of select.querySelectorAll("optgroup")) {
      group.hidden = Array.from(group.children).every(function (option) {
        return option.hidden;
      });
    }
  }

  function apply(switching) {
    const chosen = config.backends[backend.value];
    if (!chosen) {
      return;
    }
    const live = backend.value === "gpt-live";
    root.dataset.backend = backend.value; // agent_form.css hides the rows
    for (const name of config.realtime_only) {
      // Disabled inputs are not posted; the server ignores them for GPT-Live anyway.
      for (const input of root.querySelectorAll(".form-row.field-" + name + " :is(input, select, textarea)")) {
        input.disabled = live;
      }
    }
    restrict(model, chosen.models, chosen.model, switching);
    restrict(voice, chosen.voices, chosen.voice, switching);
  }

  backend.addEventListener("change", function () {
    apply(true);
  });
  apply(false);
})();

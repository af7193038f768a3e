// The portal's side of the local key agent (`ekey agent` on 127.0.0.1): pairing,
// certificate login, reading an unlock challenge, applying an unlock code, and the
// resumable CA certificate renewal. See docs/agent.md.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="ekey-agent"]');
  var base = meta ? meta.content.replace(/\/+$/, "") : "";
  var lang = document.body.getAttribute("data-lang") === "en" ? "en" : "zh";
  function t(zh, en) { return lang === "en" ? en : zh; }
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var STORE = "ekey-agent-pairing";

  function secret() { try { return localStorage.getItem(STORE) || ""; } catch (e) { return ""; } }
  function keep(s) { try { localStorage.setItem(STORE, s); } catch (e) { /* private mode */ } }

  function parse(res) {
    return res.text().then(function (text) {
      var data = null;
      try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
      return { ok: res.ok, status: res.status, data: data || {} };
    });
  }

  // A call to the agent; a network failure resolves as {down: true}.
  function agent(method, path, body) {
    var h = { "X-Ekey-Pairing": secret(), "Accept-Language": lang === "en" ? "en" : "zh-CN" };
    if (body) h["Content-Type"] = "application/json";
    return fetch(base + path, { method: method, headers: h, body: body ? JSON.stringify(body) : undefined, mode: "cors", credentials: "omit" })
      .then(parse, function () { return { ok: false, down: true, status: 0, data: {} }; });
  }

  function portal(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept-Language": lang === "en" ? "en" : "zh-CN" },
      body: body ? JSON.stringify(body) : undefined
    }).then(parse, function () { return { ok: false, status: 0, data: { message: t("网络连接失败，请重试", "Network error; try again") } }; });
  }

  function say(box, html, kind) {
    if (!box) return;
    box.className = "agent-box" + (kind ? " " + kind : "");
    box.innerHTML = "";
    if (typeof html === "string") box.textContent = html; else box.appendChild(html);
  }

  function downMessage() {
    var p = document.createElement("div");
    var a = document.createElement("strong");
    a.textContent = t("未检测到电子钥匙助手。", "The key agent is not running.");
    p.appendChild(a);
    p.appendChild(document.createTextNode(" " + t(
      "请先在这台电脑上启动电子钥匙助手：打开命令窗口（Windows：按 Win+R，输入 cmd 后回车；Mac：打开“终端”），输入 ekey agent 后回车，保持窗口打开；插入钥匙后点击“重试”。若刚才的操作被中断，重新启动助手后可从中断处继续。",
      "Run “ekey agent” on this computer (keep its window open), insert the key, then press “Retry”. An interrupted step continues where it stopped once the agent runs again.")));
    return p;
  }

  function button(label, onClick, cls) {
    var b = document.createElement("button");
    b.type = "button"; b.className = cls || "secondary small-btn"; b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  // Resolves when the agent runs and is paired with this browser; shows what to do meanwhile.
  function ready(box) {
    return new Promise(function (resolve) {
      function check() {
        agent("GET", "/status").then(function (r) {
          if (r.down || !r.ok) {
            var d = downMessage();
            d.appendChild(document.createTextNode(" "));
            d.appendChild(button(t("重试", "Retry"), check));
            say(box, d, "warn");
            return;
          }
          if (r.data.paired) { say(box, t("电子钥匙助手已连接。", "Key agent connected."), "ok"); resolve(); return; }
          var d2 = document.createElement("div");
          d2.appendChild(document.createTextNode(t("首次使用需要与电子钥匙助手配对。", "First use: pair this browser with the key agent. ")));
          d2.appendChild(button(t("配对", "Pair"), pair));
          say(box, d2, "warn");
        });
      }
      function pair() {
        agent("POST", "/pairings").then(function (r) {
          if (!r.ok) { say(box, r.data.message || t("配对失败，请重试", "Pairing failed; retry"), "error"); return; }
          var d = document.createElement("div");
          d.appendChild(document.createTextNode(t("请在电子钥匙助手窗口中输入配对码并回车：", "Type this code in the key agent's window and press Enter: ")));
          var code = document.createElement("strong");
          code.className = "pair-code"; code.setAttribute("data-pair-code", r.data.code); code.textContent = r.data.code;
          d.appendChild(code);
          say(box, d, "warn");
          var id = r.data.id, tries = 0;
          (function poll() {
            agent("GET", "/pairings/" + encodeURIComponent(id)).then(function (p) {
              if (p.status === 200 && p.data.secret) { keep(p.data.secret); check(); return; }
              if (p.status === 202 && ++tries < 300) { setTimeout(poll, 1000); return; }
              say(box, p.data.message || t("配对已过期，请重新配对", "Pairing expired; pair again"), "error");
            });
          })();
        });
      }
      check();
    });
  }

  function errorText(r) {
    if (r.down) return t("电子钥匙助手已停止响应（可能已退出）。请重新启动 ekey agent 后重试，已完成的步骤不会重做。", "The key agent stopped answering. Start ekey agent again and retry; finished steps are not repeated.");
    var m = r.data.message || t("操作失败", "Failed");
    return m + (r.data.code ? "（" + r.data.code + "）" : "");
  }

  // ---- certificate login ----------------------------------------------------------------
  document.querySelectorAll("[data-key-login]").forEach(function (box) {
    var status = box.querySelector("[data-agent-box]"), form = box.querySelector("[data-key-form]");
    var select = box.querySelector("[data-key-select]"), pin = box.querySelector("[data-key-pin]");
    var err = box.querySelector("[data-key-err]"), go = box.querySelector("[data-key-go]");
    ready(status).then(function () {
      agent("GET", "/keys").then(function (r) {
        var keys = (r.data && r.data.length) ? r.data : [];
        if (!r.ok || !keys.length) { say(status, t("未检测到电子钥匙，请插入钥匙后刷新页面。", "No key found; insert it and reload."), "warn"); return; }
        select.innerHTML = "";
        keys.forEach(function (k) {
          var o = document.createElement("option");
          o.value = k.serial;
          var cn = /CN=([^,]+)/.exec(k.subject || "");
          o.textContent = k.serial + (cn ? " · " + cn[1] : "") + (k.locked ? t("（已锁定）", " (locked)") : "");
          select.appendChild(o);
        });
        form.hidden = false;
        pin.focus();
      });
    });
    function locked() {
      var d = document.createElement("span");
      d.appendChild(document.createTextNode(t("这把钥匙已锁定（连续 6 次密码错误）。请先用账号密码登录，申请“解锁”：", "This key is locked (6 wrong PINs). Log in with your password and apply for an unlock: ")));
      var a = document.createElement("a");
      a.href = "/portal/requests/new?kind=unlock"; a.textContent = t("申请解锁", "Apply for an unlock");
      d.appendChild(a);
      return d;
    }
    function submit() {
      err.textContent = "";
      if (!pin.value) { err.textContent = t("请输入钥匙密码", "Enter the key's PIN"); return; }
      go.disabled = true;
      portal("POST", "/api/v1/key-login/challenges").then(function (c) {
        if (!c.ok) throw c;
        return agent("POST", "/keys/" + encodeURIComponent(select.value) + "/login-signature", { challenge: c.data.challenge, pin: pin.value })
          .then(function (s) {
            if (!s.ok) throw s;
            // The server checks `next` (the one rule for every door) and answers where to go.
            var next = box.getAttribute("data-next") || "";
            return portal("POST", "/login/key" + (next ? "?next=" + encodeURIComponent(next) : ""), { challenge_id: c.data.id, certificate: s.data.certificate, signature: s.data.signature });
          });
      }).then(function (l) {
        if (!l.ok) throw l;
        location.href = l.data.redirect;
      }).catch(function (r) {
        go.disabled = false; pin.value = "";
        if (r && r.data && r.data.code === "ekey.token.locked") { err.textContent = ""; err.appendChild(locked()); return; }
        err.textContent = errorText(r || {});
      });
    }
    go.addEventListener("click", submit);
    pin.addEventListener("keydown", function (e) { if (e.key === "Enter") { e.preventDefault(); submit(); } });
  });

  // ---- unlock: read the challenge into the form ---------------------------------------------
  document.querySelectorAll("[data-read-challenge]").forEach(function (btn) {
    var box = btn.parentElement.querySelector("[data-agent-box]");
    var field = document.querySelector('[name="unlock_challenge"]');
    btn.addEventListener("click", function () {
      ready(box).then(function () {
        return agent("GET", "/keys");
      }).then(function (r) {
        var keys = (r.data && r.data.length) ? r.data : [];
        var k = keys.filter(function (x) { return x.locked; })[0] || keys[0];
        if (!k) { say(box, t("未检测到电子钥匙，请插入被锁定的钥匙。", "No key found; insert the locked key."), "warn"); return null; }
        return agent("POST", "/keys/" + encodeURIComponent(k.serial) + "/unlock-challenge");
      }).then(function (r) {
        if (!r) return;
        if (!r.ok) { say(box, errorText(r), "error"); return; }
        field.value = r.data.challenge;
        say(box, t("已从钥匙 " + r.data.serial + " 读取挑战码。", "Read from key " + r.data.serial + "."), "ok");
      });
    });
  });

  // ---- unlock: apply the mailed code ----------------------------------------------------
  document.querySelectorAll("[data-unlock-apply]").forEach(function (sec) {
    var box = sec.querySelector("[data-agent-box]"), err = sec.querySelector("[data-unlock-err]");
    var go = sec.querySelector("[data-unlock-go]");
    ready(box);
    go.addEventListener("click", function () {
      var code = sec.querySelector("[data-unlock-code]").value.trim();
      var p1 = sec.querySelector("[data-unlock-pin]").value, p2 = sec.querySelector("[data-unlock-pin2]").value;
      err.textContent = "";
      if (!code) { err.textContent = t("请输入邮件中的解锁码", "Enter the code from the mail"); return; }
      if (p1.length < 6 || p1.length > 16) { err.textContent = t("新密码应为 6–16 位", "The new PIN has 6–16 characters"); return; }
      if (p1 !== p2) { err.textContent = t("两次输入的新密码不一致", "The PINs differ"); return; }
      var serial = sec.getAttribute("data-serial");
      go.disabled = true;
      agent("POST", "/keys/" + encodeURIComponent(serial) + "/unlock", { code: code, new_pin: p1, request_number: sec.getAttribute("data-number") })
        .then(function (r) {
          if (!r.ok) throw r;
          return portal("POST", "/api/v1/requests/" + encodeURIComponent(sec.getAttribute("data-request")) + "/unlock-done", r.data);
        }).then(function (d) {
          if (!d.ok) throw d;
          say(box, t("钥匙已解锁，请使用新密码。", "The key is unlocked; use the new PIN."), "ok");
          setTimeout(function () { location.reload(); }, 800);
        }).catch(function (r) { go.disabled = false; err.textContent = errorText(r || {}); });
    });
  });

  // ---- CA certificate renewal (resumable) ---------------------------------------------------
  document.querySelectorAll("[data-renewal]").forEach(function (sec) {
    var box = sec.querySelector("[data-agent-box]"), go = sec.querySelector("[data-renew-go]");
    if (!go) return;
    var err = sec.querySelector("[data-renew-err]"), pin = sec.querySelector("[data-renew-pin]");
    ready(box);
    go.addEventListener("click", function () {
      err.textContent = "";
      if (!pin.value) { err.textContent = t("请输入钥匙密码", "Enter the key's PIN"); return; }
      go.disabled = true;
      say(box, t("正在更新：在钥匙内生成新密钥、申请并写入新证书……请勿拔出钥匙。", "Renewing: new key pair on the key, new certificate requested and written… keep the key inserted."), "warn");
      agent("POST", "/keys/" + encodeURIComponent(sec.getAttribute("data-serial")) + "/renewal", { pin: pin.value, request_id: sec.getAttribute("data-request") })
        .then(function (r) {
          pin.value = "";
          if (!r.ok) throw r;
          sec.querySelector("[data-renewal-state]").textContent = t("已完成", "Done");
          var done = document.createElement("div");
          done.setAttribute("data-renew-done", "");
          done.textContent = t("证书更新完成。新证书序列号：", "Renewal complete. New certificate: ") + r.data.new_serial;
          say(box, done, "ok");
          go.hidden = true;
          pin.closest(".field").hidden = true;
        }).catch(function (r) {
          go.disabled = false;
          go.textContent = t("继续更新", "Continue the renewal");
          var d = document.createElement("div");
          d.setAttribute("data-renew-failed", "");
          d.textContent = errorText(r || {}) + " " + t("原证书仍可正常使用；点击“继续更新”将从中断处继续。", "The old certificate still works; “Continue” resumes where it stopped.");
          say(box, d, "error");
        });
    });
  });

  // ---- change the key's PIN (the initial PIN at first use) -------------------------------
  document.querySelectorAll("[data-pin-change]").forEach(function (sec) {
    var box = sec.querySelector("[data-agent-box]"), go = sec.querySelector("[data-pin-go]");
    var err = sec.querySelector("[data-pin-err]");
    var old = sec.querySelector("[data-pin-old]"), p1 = sec.querySelector("[data-pin-new]"), p2 = sec.querySelector("[data-pin-new2]");
    go.addEventListener("click", function () {
      err.textContent = "";
      if (!old.value) { err.textContent = t("请输入当前PIN码", "Enter the current PIN"); return; }
      if (p1.value.length < 6 || p1.value.length > 16) { err.textContent = t("新PIN码应为 6–16 位", "The new PIN has 6–16 characters"); return; }
      if (p1.value !== p2.value) { err.textContent = t("两次输入的新PIN码不一致", "The two new PINs differ"); return; }
      go.disabled = true;
      ready(box).then(function () {
        return agent("POST", "/keys/" + encodeURIComponent(sec.getAttribute("data-serial")) + "/pin", { pin: old.value, new_pin: p1.value });
      }).then(function (r) {
        go.disabled = false;
        old.value = ""; p1.value = ""; p2.value = "";
        if (!r.ok) { say(box, errorText(r), "error"); return; }
        var done = document.createElement("div");
        done.setAttribute("data-pin-done", "");
        done.textContent = t("PIN码已修改，以后请使用新PIN码。", "The PIN was changed; use the new PIN from now on.");
        say(box, done, "ok");
      });
    });
  });
})();

// eKey pages: inline checks of identifiers, "获取登录名", uploads (drag and drop, camera,
// preview, offer to downscale an oversize photo), and one-shot buttons. The server checks
// everything again; without this script every form still works except file uploads.
(function () {
  "use strict";
  var lang = document.body.getAttribute("data-lang") === "en" ? "en" : "zh";
  function t(zh, en) { return lang === "en" ? en : zh; }
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // --- identifier checks (the same rules as the server: GB 32100, GB 11643) ---------------
  var CC = "0123456789ABCDEFGHJKLMNPQRTUWXY";
  function normal(s) {
    return s.replace(/[\uFF01-\uFF5E]/g, function (c) { return String.fromCharCode(c.charCodeAt(0) - 0xFEE0); })
      .replace(/\s+/g, "").toUpperCase();
  }
  function checkCredit(v) {
    v = normal(v);
    if (v.length !== 18) return t("统一社会信用代码应为 18 位，现在是 " + v.length + " 位", "The credit code has 18 characters; " + v.length + " given");
    var w = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28], sum = 0;
    for (var i = 0; i < 18; i++) {
      var k = CC.indexOf(v[i]);
      if (k < 0) return t("第 " + (i + 1) + " 位“" + v[i] + "”不是有效字符（不使用 I、O、Z、S、V）", "Character " + (i + 1) + " (" + v[i] + ") is not allowed");
      if (i < 17) sum += k * w[i];
    }
    if (CC[(31 - sum % 31) % 31] !== v[17]) return t("校验位不正确，请对照营业执照逐位核对", "The check character is wrong; compare with the licence");
    // Characters 9–17: the organisation code (GB 11714) with its own check character.
    var ow = [3, 7, 9, 10, 5, 8, 4, 2], os = 0;
    for (var j = 0; j < 8; j++) os += parseInt(v[8 + j], 36) * ow[j];
    var oc = 11 - os % 11, ocs = oc === 10 ? "X" : oc === 11 ? "0" : String(oc);
    if (ocs !== v[16]) return t("第 9–17 位（组织机构代码）校验不正确，请对照营业执照逐位核对", "Characters 9–17 (the organisation code) do not check out; compare with the licence");
    return "";
  }
  function checkId(v) {
    v = normal(v);
    if (v.length !== 18) return t("身份证号码应为 18 位，现在是 " + v.length + " 位", "The ID number has 18 characters; " + v.length + " given");
    if (!/^\d{17}[\dX]$/.test(v)) return t("身份证号码只能是数字，最后一位可以是 X", "Digits only; the last may be X");
    var w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], sum = 0;
    for (var i = 0; i < 17; i++) sum += (+v[i]) * w[i];
    if ("10X98765432"[sum % 11] !== v[17]) return t("校验位不正确，请核对身份证号码", "The check digit is wrong; check the number");
    return "";
  }
  function checkMobile(v) { return /^1[3-9]\d{9}$/.test(normal(v).replace(/[-\u2010-\u2015\u2212]/g, "").replace(/^(\+86|86(?=\d{11}$))/, "")) ? "" : t("手机号码应为 11 位，以 13–19 开头", "A mobile number has 11 digits starting 13–19"); }
  function checkEmail(v) { return /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(v.trim()) ? "" : t("邮箱格式不正确", "Not an email address"); }
  function checkPassword(v) { return v.length >= 8 && /\d/.test(v) && /[A-Za-z\u4e00-\u9fff]/.test(v) ? "" : t("密码至少 8 位，且须同时包含字母和数字", "At least 8 characters with letters and digits"); }
  var checks = { credit_code: checkCredit, id_number: checkId, mobile: checkMobile, email: checkEmail, password: checkPassword,
    password2: function (v) { var p = document.querySelector('input[name="password"]'); return p && p.value !== v ? t("两次输入的密码不一致", "The passwords differ") : ""; } };
  function showError(input, msg) {
    var box = input.closest(".field"), err = box && box.querySelector(".err");
    if (err) err.textContent = msg;
    if (box) box.classList.toggle("has-error", !!msg);
    if (msg) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  }
  document.querySelectorAll("input[data-check]").forEach(function (input) {
    var kind = input.getAttribute("data-check"), fn = checks[kind];
    if (!fn) return;
    input.addEventListener("blur", function () { if (input.value.trim() !== "") showError(input, fn(input.value)); });
    input.addEventListener("input", function () { if (input.getAttribute("aria-invalid")) showError(input, fn(input.value)); });
  });

  // --- a chosen text file read into a text area (the agencies file) ----------------------
  document.querySelectorAll("input[type=file][data-text-into]").forEach(function (input) {
    input.addEventListener("change", function () {
      var area = document.getElementById(input.getAttribute("data-text-into"));
      var file = input.files && input.files[0];
      if (!area || !file) return;
      file.text().then(function (text) { area.value = text; });
    });
  });

  // --- one-shot forms: a double click sends once -----------------------------------------
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      var q = form.getAttribute("data-confirm");
      if (q && !window.confirm(q)) { e.preventDefault(); return; }
      if (form.dataset.sent) { e.preventDefault(); return; }
      form.dataset.sent = "1";
      form.querySelectorAll("button").forEach(function (b) { setTimeout(function () { b.disabled = true; }, 0); });
    });
  });

  function api(method, url, body, headers) {
    var h = Object.assign({ "X-CSRF-Token": csrf, "Accept-Language": lang === "en" ? "en" : "zh-CN" }, headers || {});
    return fetch(url, { method: method, body: body, headers: h, credentials: "same-origin" }).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return { ok: res.ok, status: res.status, data: data };
      });
    });
  }

  // --- 获取登录名 ---------------------------------------------------------------------------
  document.querySelectorAll("[data-get-login-name]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      btn.disabled = true;
      api("POST", "/api/v1/login-names").then(function (r) {
        btn.disabled = false;
        var out = document.getElementById("allocated"), input = document.getElementById("f-login_name");
        if (r.ok && r.data) {
          input.value = r.data.login_name;
          out.textContent = t("已为您保留：", "Reserved for you: ") + r.data.login_name;
          var radio = document.querySelector('input[name="login_mode"][value="allocate"]');
          if (radio) radio.checked = true;
        } else {
          out.textContent = (r.data && r.data.message) || t("获取失败，请重试", "Failed; try again");
        }
      }, function () { btn.disabled = false; });
    });
  });

  // --- uploads ---------------------------------------------------------------------------
  function human(n) { return n >= 1048576 ? (n / 1048576).toFixed(1).replace(/\.0$/, "") + " MB" : (n < 10240 ? (n / 1024).toFixed(1).replace(/\.0$/, "") : Math.round(n / 1024)) + " KB"; }
  var section = document.querySelector("[data-upload]");
  if (section && section.getAttribute("data-editable") === "yes") {
    var id = section.getAttribute("data-upload"), limit = +section.getAttribute("data-limit");
    var confirmBtn = document.getElementById("confirm-upload"), hint = document.getElementById("confirm-hint");
    var refresh = function () {
      var missing = Array.prototype.filter.call(section.querySelectorAll(".item"), function (li) {
        return li.getAttribute("data-required") === "yes" && li.getAttribute("data-present") !== "yes";
      });
      if (confirmBtn) confirmBtn.disabled = missing.length > 0;
      if (hint) hint.textContent = missing.length ? t("还差 " + missing.length + " 项必传材料。", missing.length + " required item(s) missing.") : t("材料齐全，可以确认上传。", "Complete: you can confirm the upload.");
    };
    var upload = function (li, file, fit) {
      var item = li.getAttribute("data-item"), msg = li.querySelector("[data-msg]");
      msg.className = "upload-msg"; msg.textContent = t("正在上传 ", "Uploading ") + file.name + " (" + human(file.size) + ") …";
      var url = "/api/v1/requests/" + id + "/materials/" + item + (fit ? "?fit=1" : "");
      return api("PUT", url, file, { "Content-Type": file.type || "application/octet-stream", "X-File-Name": encodeURIComponent(file.name) }).then(function (r) {
        if (r.ok) {
          li.setAttribute("data-present", "yes"); li.classList.add("present");
          var st = li.querySelector("[data-state]");
          if (st) st.textContent = t("已上传，待确认", "uploaded, not yet confirmed") + " · " + human(r.data.size);
          msg.className = "upload-msg good";
          msg.textContent = r.data.fitted ? t("已自动压缩并上传：", "Downscaled and uploaded: ") + human(r.data.fitted.before) + " → " + human(r.data.fitted.after) : t("上传成功", "Uploaded");
          var prev = li.querySelector("[data-preview]");
          if (prev) {
            prev.innerHTML = "";
            var a = document.createElement("a");
            a.href = "/api/v1/requests/" + id + "/materials/" + item + "?inline=true&v=" + Date.now(); a.target = "_blank"; a.rel = "noopener";
            if (/^image\//.test(r.data.content_type)) { var img = document.createElement("img"); img.src = a.href; img.alt = file.name; a.appendChild(img); }
            else a.textContent = t("查看 PDF", "Open the PDF");
            prev.appendChild(a);
          }
          refresh();
        } else {
          msg.className = "upload-msg bad";
          msg.textContent = (r.data && r.data.message) || t("上传失败，请重试", "Upload failed; try again");
          if (r.status === 413 && /^image\/(jpeg|png)$/.test(file.type) && !fit) {
            var b = document.createElement("button");
            b.type = "button"; b.className = "secondary small-btn"; b.setAttribute("data-fit", "");
            b.textContent = t("自动压缩到 " + human(limit) + " 以内后上传", "Downscale to under " + human(limit) + " and upload");
            b.addEventListener("click", function () { b.disabled = true; upload(li, file, true); });
            msg.appendChild(document.createTextNode(" ")); msg.appendChild(b);
          }
        }
      }, function () { msg.className = "upload-msg bad"; msg.textContent = t("网络错误，文件未上传，请重试", "Network error: not uploaded, try again"); });
    };
    section.querySelectorAll(".item").forEach(function (li) {
      li.querySelectorAll("[data-file]").forEach(function (input) {
        input.addEventListener("change", function () { if (input.files && input.files[0]) upload(li, input.files[0], false); input.value = ""; });
      });
      var drop = li.querySelector("[data-drop]");
      if (!drop) return;
      ["dragenter", "dragover"].forEach(function (ev) { drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); }); });
      ["dragleave", "drop"].forEach(function (ev) { drop.addEventListener(ev, function () { drop.classList.remove("over"); }); });
      drop.addEventListener("drop", function (e) { e.preventDefault(); var f = e.dataTransfer.files[0]; if (f) upload(li, f, false); });
    });
    refresh();
  }

  // Remark templates fill the remark (the clerk can still edit it).
  document.querySelectorAll("[data-remark-template]").forEach(function (sel) {
    sel.addEventListener("change", function () {
      var box = document.getElementById("remark");
      if (sel.value && box) { box.value = box.value ? box.value + "\n" + sel.value : sel.value; var r = document.querySelector('input[name="verdict"][value="return"]'); if (r) r.checked = true; }
      sel.value = "";
    });
  });

  // Holiday file upload (admin).
  document.querySelectorAll("[data-holiday-upload]").forEach(function (input) {
    input.addEventListener("change", function () {
      var f = input.files && input.files[0], msg = document.querySelector("[data-holiday-msg]");
      if (!f) return;
      api("PUT", "/api/v1/admin/holidays", f, { "Content-Type": "application/json" }).then(function (r) {
        if (r.ok) { window.location.href = "/console/admin?done=holidays"; }
        else { msg.className = "upload-msg bad"; msg.textContent = (r.data && r.data.message) || t("载入失败", "Failed"); }
      });
    });
  });

  // Mailing fields only matter when mailing is chosen.
  var mailFields = document.querySelector(".mail-fields");
  if (mailFields) {
    var sync = function () { var m = document.querySelector('input[name="method"][value="mail"]'); mailFields.hidden = !(m && m.checked); };
    document.querySelectorAll('input[name="method"]').forEach(function (r) { r.addEventListener("change", sync); });
    sync();
  }
})();

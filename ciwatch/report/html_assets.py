"""The HTML report's style and script, inlined into every page: the page is one file that
needs nothing at view time (no CDN, no font, no network). The script reads the page's text
only through ``textContent`` and data attributes: it never turns recorded text into markup."""

# ruff: noqa: E501  (CSS and script, one rule or statement a line)

CSS = """
:root{--bg:#f4f5f7;--card:#fff;--ink:#1d2330;--muted:#5d6675;--line:#e1e4ea;--accent:#2f5fd0;
--fail:#c62828;--fail-bg:#fdecea;--warn:#b26a00;--warn-bg:#fff4e0;--pass:#1b7f3b;--pass-bg:#e7f6ec;
--high:#c62828;--medium:#b26a00;--low:#4a6fa5;--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
code,.mono{font-family:var(--mono);font-size:.92em}
.wrap{max-width:1180px;margin:0 auto;padding:0 20px}
.verdict{padding:18px 0 14px;border-bottom:1px solid var(--line)}
.verdict.v-fail{background:var(--fail-bg)}.verdict.v-warn{background:var(--warn-bg)}.verdict.v-pass{background:var(--pass-bg)}
.verdict .row{display:flex;gap:16px;align-items:center}.verdict .head{min-width:0}
.verdict .cmd{margin:12px 0 0;word-break:break-word}.verdict .note{margin:8px 0 0;font-weight:600}
.pill{display:inline-block;font-weight:700;letter-spacing:.06em;color:#fff;border-radius:8px;padding:6px 16px;font-size:22px}
.v-fail .pill{background:var(--fail)}.v-warn .pill{background:var(--warn)}.v-pass .pill{background:var(--pass)}
.verdict h1{font-size:20px;margin:0;font-weight:600}
.verdict .sub{color:var(--muted);margin-top:4px;word-break:break-word}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:10px 18px;margin:0}
.facts div{min-width:0}.facts dt{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.facts dd{margin:0;word-break:break-word}
nav{position:sticky;top:0;z-index:5;background:rgba(255,255,255,.96);border-bottom:1px solid var(--line)}
nav .wrap{display:flex;gap:18px;overflow-x:auto;white-space:nowrap;padding-top:9px;padding-bottom:9px}
nav a{color:var(--ink);font-weight:500}nav .n{color:var(--muted);font-weight:400}
section{margin:22px 0;scroll-margin-top:50px}
h2{font-size:17px;margin:0 0 10px}h2 .n{color:var(--muted);font-weight:400}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin:0 0 12px;min-width:0}
.finding{border-left:5px solid var(--low)}
.finding.sev-high,.finding.sev-critical{border-left-color:var(--high)}.finding.sev-medium{border-left-color:var(--medium)}
.finding .top{display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
.sev{font-size:12px;font-weight:700;text-transform:uppercase;border-radius:4px;padding:1px 7px;color:#fff;background:var(--low)}
.sev.high,.sev.critical{background:var(--high)}.sev.medium{background:var(--medium)}
.pkg{font-weight:600}.muted{color:var(--muted)}
.msg{margin:6px 0;word-break:break-word}
.lineage{display:flex;flex-wrap:wrap;gap:4px 0;list-style:none;margin:8px 0;padding:0;font-family:var(--mono);font-size:13px}
.lineage li{display:flex;align-items:center}
.lineage li+li:before{content:"\\203a";color:var(--muted);margin:0 6px}
.lineage a{background:#eef1f6;border-radius:5px;padding:2px 7px;color:var(--ink);word-break:break-all}
.lineage .hookstep a{background:#fff1d6;border:1px solid #f0c36a}
.lineage li:last-child a{background:#fde2e0;border:1px solid #f2a09a}
.badge{display:inline-block;font-size:12px;border-radius:10px;padding:0 8px;background:#eef1f6;color:var(--ink);white-space:nowrap}
.badge.refused{background:var(--fail);color:#fff}.badge.flagged{background:var(--warn-bg);color:var(--warn);border:1px solid #f0c36a}
.badge.allowed{background:var(--pass-bg);color:var(--pass)}.badge.hook{background:#fff1d6;border:1px solid #f0c36a}
.badge.hit{background:var(--fail-bg);color:var(--fail);border:1px solid #f2a09a}
.hint{color:var(--muted);font-size:13.5px;margin:6px 0 0}
details>summary{cursor:pointer}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
td.wrapit{word-break:break-all}
tr.st-refused td:first-child{box-shadow:inset 3px 0 var(--fail)}tr.st-flagged td:first-child{box-shadow:inset 3px 0 var(--warn)}
.filters{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 10px}
.filters input,.filters select{font:inherit;font-size:14px;padding:5px 8px;border:1px solid var(--line);border-radius:6px;background:#fff;min-width:0;flex:1 1 150px;max-width:100%}
.btn{font:inherit;font-size:13px;border:1px solid var(--line);background:#fff;border-radius:6px;padding:3px 10px;cursor:pointer}
.tree{font-family:var(--mono);font-size:13px}
.tree{overflow-x:auto}.tree .kids{margin-left:9px;padding-left:12px;border-left:1px dashed #cfd4dc}.tree .kids.flat{margin-left:0;padding-left:0;border-left:0}
.tree .proc>summary,.tree .leaf{list-style:none;padding:2px 4px;border-radius:4px;display:flex;gap:6px;align-items:baseline;flex-wrap:wrap}
.tree .proc>summary::-webkit-details-marker{display:none}
.tree .proc>summary:before{content:"▸";color:var(--muted);width:10px;display:inline-block}
.tree .proc[open]>summary:before{content:"▾"}
.tree .leaf:before{content:"•";color:#b5bcc8;width:10px;display:inline-block}
.tree .pid{color:var(--muted)}.tree .name{font-weight:600}
.tree .argv{color:var(--muted);word-break:break-all;font-weight:400}
.tree .hit>summary,.tree .leaf.hit{background:var(--fail-bg)}
.tree .target{outline:2px solid var(--accent)}
.empty{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:12.5px;padding:20px 0 40px}
@media (max-width:600px){.wrap{padding:0 12px}.pill{font-size:18px;padding:4px 12px}.verdict h1{font-size:17px}.verdict .row{align-items:flex-start}
.hide-sm{display:none}.tree .argv{display:none}th,td{padding:4px 5px}}
"""

JS = """
(function(){
  function openTo(el){for(var p=el;p;p=p.parentElement){if(p.tagName==='DETAILS')p.open=true;}}
  function jump(id){var el=document.getElementById(id);if(!el)return;openTo(el);
    document.querySelectorAll('.target').forEach(function(t){t.classList.remove('target');});
    var line=el.tagName==='DETAILS'?el.querySelector('summary'):el;line.classList.add('target');
    line.scrollIntoView({block:'center'});}
  document.addEventListener('click',function(ev){var a=ev.target.closest('a[href^="#"]');
    if(!a)return;var id=a.getAttribute('href').slice(1);if(!id)return;ev.preventDefault();
    history.replaceState(null,'','#'+id);jump(id);});
  if(location.hash)jump(location.hash.slice(1));
  document.querySelectorAll('[data-tree]').forEach(function(b){b.addEventListener('click',function(){
    var open=b.getAttribute('data-tree')==='open';
    document.querySelectorAll('.tree details').forEach(function(d){d.open=open;});});});
  var table=document.getElementById('egress-table');if(!table)return;
  var rows=Array.prototype.slice.call(table.tBodies[0].rows);
  var f={host:document.getElementById('f-host'),process:document.getElementById('f-process'),
    hook:document.getElementById('f-hook'),status:document.getElementById('f-status')};
  var shown=document.getElementById('egress-shown');
  function apply(){var host=f.host.value.trim().toLowerCase(),n=0;
    rows.forEach(function(r){var ok=(!host||r.dataset.host.toLowerCase().indexOf(host)>=0)&&
      (!f.process.value||r.dataset.process===f.process.value)&&
      (!f.hook.value||r.dataset.hook===f.hook.value)&&(!f.status.value||r.dataset.status===f.status.value);
      r.hidden=!ok;if(ok)n++;});
    shown.textContent=n+' of '+rows.length;}
  Object.keys(f).forEach(function(k){f[k].addEventListener('input',apply);f[k].addEventListener('change',apply);});
  apply();
})();
"""

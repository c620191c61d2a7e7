"""``/accounts``: the admin's page for accounts (list, add, disable, enable, reset a password, change role).

Every route here is the admin's (the routing table in :mod:`.app`): the guard authenticates,
checks the CSRF token and the role, and audits each POST with who, the account's name in the path,
the role asked for and the result; a password is never in the audit. A new or reset password is
made here and shown once, in the answer to the POST that made it: the archive keeps only its hash.
The last enabled admin cannot be disabled or demoted (the store checks it in the transaction that
changes the account); a disabled account cannot log in and its sessions end at once.
"""

from __future__ import annotations

from datetime import date

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from firmware_py.errors import AccountError
from firmware_py.station.accounts import accounts
from firmware_py.station.archive.store import AccountRow
from firmware_py.station.web import times
from firmware_py.station.web.guard import Ctx, Refused, html
from firmware_py.station.web.pages import csrf_field, h, layout, q

ROLE_LABELS = {"viewer": "查看 viewer", "operator": "值班员 operator", "admin": "管理员 admin"}
CHANGES = ("role", "disable", "enable", "password")


def page(request: Request, ctx: Ctx) -> Response:
    return html(accounts_html(ctx))


def add(request: Request, ctx: Ctx) -> Response:
    name, role = ctx.form.get("username", "").strip(), ctx.form.get("role", "")
    password = accounts.new_password()
    try:
        accounts.add_account(ctx.station.store, name, role, password, ctx.station.now())
    except AccountError as exc:
        raise Refused(400, str(exc)) from None
    ctx.note = f"added {name} as {role}"
    return html(accounts_html(ctx, shown=(name, password)))


def change(request: Request, ctx: Ctx) -> Response:
    name, what = request.path_params["name"], request.path_params["change"]
    if what not in CHANGES:
        raise Refused(404, f"no such change {what[:40]!r}: one of {', '.join(CHANGES)}")
    store = ctx.station.store
    before = {a.name: a for a in store.account_rows()}.get(name)
    if before is None:
        raise Refused(404, f"no account {name[:64]!r} 无此账号")
    password = accounts.new_password() if what == "password" else None
    role = ctx.form.get("role", "") if what == "role" else None
    try:
        accounts.change(store, name, role=role, disabled={"disable": True, "enable": False}.get(what),
                        password=password)
    except AccountError as exc:
        raise Refused(409 if "last admin" in str(exc) else 400, str(exc)) from None
    ctx.note = {"role": f"role of {name}: {before.role} -> {role}", "disable": f"disabled {name}, sessions ended",
                "enable": f"enabled {name}", "password": f"new password for {name}, sessions ended"}[what]
    if password is not None:
        return html(accounts_html(ctx, shown=(name, password)))
    if ctx.session.name == name and what == "disable":  # the admin's own session just ended
        return RedirectResponse("/login", 303)
    return RedirectResponse("/accounts", 303)


# ---------------------------------------------------------------- HTML


def accounts_html(ctx: Ctx, shown: tuple[str, str] | None = None) -> str:
    st, session = ctx.station, ctx.session
    today = st.now().date()
    rows = "".join(_row(a, session, st.tz, today) for a in st.store.account_rows())
    notice = ""
    if shown:
        notice = (f'<section class="new-password" role="status" data-account="{h(shown[0])}">'
                  f'<p>账号 {h(shown[0])} 的新密码（仅显示这一次）The new password of {h(shown[0])}, '
                  f'shown only this once:</p><p><code id="new-password">{h(shown[1])}</code></p></section>')
    roles = "".join(f'<option value="{r}">{label}</option>' for r, label in ROLE_LABELS.items())
    body = (f'<h2>账号 Accounts</h2>{notice}'
            '<table class="accounts"><thead><tr><th>账号 Name</th><th>角色 Role</th><th>创建 Created</th>'
            '<th>最近登录 Last login</th><th>状态 State</th><th>操作 Change</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>'
            f'<h3>添加账号 Add an account</h3><form method="post" action="/accounts" class="filter">'
            f'{csrf_field(session)}<label>用户名 Name <input name="username" required maxlength="64" '
            'pattern="[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}"></label>'
            f'<label>角色 Role <select name="role">{roles}</select></label>'
            '<button type="submit" data-action="add_account">添加 Add</button></form>'
            '<p class="muted">新密码由系统生成并只显示一次 A new password is made by the station and shown once.</p>')
    return layout("账号 Accounts", body, session, active="/accounts")


def _row(a: AccountRow, session, tz, today: date) -> str:
    base = f"/accounts/{q(a.name)}"
    roles = "".join(f'<option value="{r}"{" selected" if r == a.role else ""}>{label}</option>'
                    for r, label in ROLE_LABELS.items())
    toggle = ("enable", "启用 Enable") if a.disabled else ("disable", "停用 Disable")
    controls = (f'<form method="post" action="{base}/role" class="inline">{csrf_field(session)}'
                f'<label>角色 Role <select name="role">{roles}</select></label>'
                '<button type="submit" data-action="change_role">修改 Change</button></form>'
                f'<form method="post" action="{base}/{toggle[0]}" class="inline">{csrf_field(session)}'
                f'<button type="submit" data-action="{toggle[0]}">{toggle[1]}</button></form>'
                f'<form method="post" action="{base}/password" class="inline">{csrf_field(session)}'
                '<button type="submit" data-action="reset_password">重置密码 Reset password</button></form>')
    state = "已停用 disabled" if a.disabled else "正常 active"
    last = times.time_html(a.last_login, tz, today) if a.last_login else "从未 never"
    disabled = "true" if a.disabled else "false"
    return (f'<tr data-account="{h(a.name)}" data-role="{h(a.role)}" data-disabled="{disabled}">'
            f'<td>{h(a.name)}</td><td>{h(ROLE_LABELS.get(a.role, a.role))}</td>'
            f'<td>{times.time_html(a.created_at, tz, today)}</td><td>{last}</td><td>{state}</td>'
            f'<td>{controls}</td></tr>')

//! The account page (`/account`), for every person with an account on the box: the
//! apps signed in with OAuth (revoke), app passwords (create, revoke), password
//! sessions (sign out), the password and the email address. It signs in like the OAuth
//! sign-in page (account password, login rate limits shared with `createSession`) and
//! remembers the accounts in the same device cookie, so several accounts can be
//! managed from one phone. Every change is a POST to `/account` with the CSRF token and
//! the account's DID, which must be one this browser signed in to; changing the
//! password asks for the current one again. No script: each answer is a whole page.

use super::pages::{self, esc, Device, Page};
use crate::auth::tokens::Scope;
use crate::auth::Session;
use crate::error::XrpcError;
use crate::pds::{self, Ctx};
use crate::storage::accounts::Account;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// What the last action did, shown at the top of the page.
enum Notice {
    Done(String),
    Failed(String),
    /// A new app password: the only time its secret is shown.
    NewAppPassword {
        name: String,
        password: String,
    },
}

impl Notice {
    fn html(&self) -> String {
        match self {
            Notice::Done(m) => format!("<p class=\"done\" id=\"notice\">{}</p>", esc(m)),
            Notice::Failed(m) => format!("<p class=\"error\" id=\"error\">{}</p>", esc(m)),
            Notice::NewAppPassword { name, password } => format!(
                "<div class=\"done\" id=\"notice\"><p>App password “{}” created. Enter it in the \
                 app now: it is not shown again.</p><p><code id=\"new-app-password\">{}</code></p></div>",
                esc(name),
                esc(password)
            ),
        }
    }
}

/// A page answer for this browser: its CSRF token and the cookies to set.
struct Browser {
    csrf: String,
    device: Device,
    cookies: Vec<String>,
}

impl Browser {
    fn read(ctx: &Ctx, headers: &HeaderMap) -> Browser {
        let (csrf, cookie) = pages::csrf(ctx, headers);
        Browser {
            csrf,
            device: Device::read(ctx, headers),
            cookies: cookie.into_iter().collect(),
        }
    }

    fn page(self, title: &str, body: String, status: StatusCode) -> Response {
        let mut page = Page::new(title, body).status(status);
        for c in self.cookies {
            page = page.cookie(c);
        }
        page.into_response()
    }

    /// A hidden-field form posting `action` for `did`, around `fields` and a button.
    fn form(&self, did: &str, action: &str, fields: &str, button: &str, class: &str) -> String {
        format!(
            "<form method=\"post\" action=\"/account\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"account\" value=\"{did}\">\
             <input type=\"hidden\" name=\"action\" value=\"{action}\">{fields}\
             <button type=\"submit\" class=\"{class}\" id=\"{action}-button\">{button}</button></form>",
            csrf = self.csrf,
            did = esc(did),
        )
    }
}

/// `GET /account[?as=<did>][&add=1]`.
pub(crate) async fn page(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let browser = Browser::read(&ctx, &headers);
    let wanted = q
        .get("as")
        .filter(|d| browser.device.has(d))
        .cloned()
        .or_else(|| browser.device.accounts.first().map(|(d, _)| d.clone()));
    match wanted.filter(|_| !q.contains_key("add")) {
        Some(did) => account_page(&ctx, browser, &did, None).await,
        None => sign_in_page(&ctx, browser, None, StatusCode::OK).await,
    }
}

async fn sign_in_page(
    ctx: &Ctx,
    browser: Browser,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let remembered = remembered_links(ctx, &browser.device, None).await;
    let error = error
        .map(|e| Notice::Failed(e.to_owned()).html())
        .unwrap_or_default();
    let body = format!(
        "<h1>Your account on {host}</h1>{remembered}\
         <div class=\"card\">{error}\
         <form method=\"post\" action=\"/account\" id=\"sign-in\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"action\" value=\"sign-in\">\
         <label for=\"identifier\">Handle or email</label>\
         <input type=\"text\" id=\"identifier\" name=\"identifier\" autocomplete=\"username\" autocapitalize=\"none\" required>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" id=\"sign-in-button\">Sign in</button></form></div>\
         <p class=\"note\">Your account password, not an app password. This browser stays \
         signed in for a week; sign out on the account page.</p>",
        host = esc(&ctx.config.hostname),
        csrf = browser.csrf,
    );
    browser.page("Your account", body, status)
}

/// Links to the accounts this browser is signed in to (but `current`).
async fn remembered_links(ctx: &Ctx, device: &Device, current: Option<&str>) -> String {
    let mut links = String::new();
    for (did, _) in &device.accounts {
        if Some(did.as_str()) == current {
            continue;
        }
        if let Ok(Some(a)) = ctx.find_account(did).await {
            links.push_str(&format!(
                "<li><a href=\"/account?as={}\">@{}</a></li>",
                esc(&urlencode(did)),
                esc(&a.handle)
            ));
        }
    }
    if links.is_empty() {
        return links;
    }
    let title = if current.is_some() {
        "Other accounts on this browser"
    } else {
        "Signed in on this browser"
    };
    format!("<div class=\"card\"><p>{title}:</p><ul>{links}</ul></div>")
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

async fn account_page(ctx: &Ctx, browser: Browser, did: &str, notice: Option<Notice>) -> Response {
    let account = match ctx.find_account(did).await {
        Ok(Some(a)) => a,
        _ => {
            return sign_in_page(
                ctx,
                browser,
                Some("That account is not on this box any more."),
                StatusCode::NOT_FOUND,
            )
            .await
        }
    };
    let session = Session::new(did.to_owned(), Scope::Access);
    let signed_in = pds::signed_in::signed_in(ctx, did).await;
    let app_passwords = pds::sessions::list_app_passwords(ctx, &session).await;
    let (Ok(signed_in), Ok(app_passwords)) = (signed_in, app_passwords) else {
        return pages::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The box could not read this account; try again.",
        );
    };
    let others = remembered_links(ctx, &browser.device, Some(did)).await;
    let body = format!(
        "<h1>@{handle}</h1><p class=\"note\">{did} · on {host}</p>{notice}\
         {apps}{passwords}{sessions}{password}{email}\
         <div class=\"card\" id=\"browser\">{others}\
         <p><a href=\"/account?add=1\">Sign in to another account</a></p>{sign_out}</div>",
        handle = esc(&account.handle),
        did = esc(did),
        host = esc(&ctx.config.hostname),
        notice = notice.map(|n| n.html()).unwrap_or_default(),
        apps = apps_section(ctx, &browser, did, &signed_in.apps),
        passwords = app_passwords_section(&browser, did, &app_passwords.passwords),
        sessions = sessions_section(&browser, did, &signed_in.sessions),
        password = password_section(&browser, did),
        email = email_section(&browser, &account, ctx.mailer.is_some()),
        sign_out = browser.form(did, "sign-out", "", "Sign out on this browser", "secondary"),
    );
    browser.page("Your account", body, StatusCode::OK)
}

fn apps_section(
    ctx: &Ctx,
    b: &Browser,
    did: &str,
    apps: &[crate::storage::oauth::Grant],
) -> String {
    let mut rows = String::new();
    for g in apps {
        let perms: String = ctx
            .scope_permissions(&g.scope)
            .map(|p| p.describe())
            .unwrap_or_default()
            .iter()
            .map(|d| format!("<li>{}</li>", esc(d)))
            .collect();
        let domain = pages::client_domain(&g.client_id);
        let grant = format!(
            "<input type=\"hidden\" name=\"grant\" value=\"{}\">",
            esc(&g.id)
        );
        rows.push_str(&format!(
            "<li class=\"app\"><strong>{name}</strong> <small class=\"domain\">{domain}</small><br>\
             <span class=\"note\">since {since}, last used {used}</span>\
             <details><summary>What it may do</summary><ul class=\"perms\">{perms}</ul></details>{revoke}</li>",
            name = esc(&g.client_name),
            domain = esc(&domain),
            since = date(g.created_at),
            used = date(g.used_at),
            revoke = b.form(did, "revoke-app", &grant, "Revoke", "danger"),
        ));
    }
    if rows.is_empty() {
        rows = "<li class=\"note\">No app is signed in with OAuth.</li>".to_owned();
    }
    format!("<div class=\"card\" id=\"apps\"><h2>Apps</h2><ul class=\"list\">{rows}</ul></div>")
}

fn app_passwords_section(
    b: &Browser,
    did: &str,
    list: &[pds::sessions::AppPasswordView],
) -> String {
    let mut rows = String::new();
    for p in list {
        let name = format!(
            "<input type=\"hidden\" name=\"name\" value=\"{}\">",
            esc(&p.name)
        );
        let kind = if p.privileged { ", privileged" } else { "" };
        rows.push_str(&format!(
            "<li><strong>{}</strong> <span class=\"note\">created {}{kind}</span>{}</li>",
            esc(&p.name),
            esc(p.created_at.get(..10).unwrap_or(&p.created_at)),
            b.form(did, "revoke-app-password", &name, "Revoke", "danger"),
        ));
    }
    if rows.is_empty() {
        rows = "<li class=\"note\">No app passwords.</li>".to_owned();
    }
    let fields = "<label for=\"app-password-name\">Name</label>\
        <input type=\"text\" id=\"app-password-name\" name=\"name\" maxlength=\"100\" required>\
        <label><input type=\"checkbox\" name=\"privileged\" value=\"1\"> Allow direct messages (privileged)</label>";
    format!(
        "<div class=\"card\" id=\"app-passwords\"><h2>App passwords</h2>\
         <p class=\"note\">For apps that sign in with a password (the Bluesky app can). Each app \
         gets its own; revoking one signs that app out.</p><ul class=\"list\">{rows}</ul>{}</div>",
        b.form(
            did,
            "create-app-password",
            fields,
            "Create app password",
            ""
        )
    )
}

fn sessions_section(
    b: &Browser,
    did: &str,
    list: &[crate::storage::accounts::LoginSession],
) -> String {
    let mut rows = String::new();
    for s in list {
        let with = match &s.app_password {
            Some(name) => format!("App password “{}”", esc(name)),
            None => "Account password".to_owned(),
        };
        let id = format!(
            "<input type=\"hidden\" name=\"session\" value=\"{}\">",
            esc(&s.id)
        );
        rows.push_str(&format!(
            "<li>{with} <span class=\"note\">until {}</span>{}</li>",
            date(s.expires_at),
            b.form(did, "end-session", &id, "Sign out", "secondary"),
        ));
    }
    if rows.is_empty() {
        rows = "<li class=\"note\">No app is signed in with a password.</li>".to_owned();
    }
    format!("<div class=\"card\" id=\"sessions\"><h2>Password sessions</h2><ul class=\"list\">{rows}</ul></div>")
}

fn password_section(b: &Browser, did: &str) -> String {
    let fields = "<label for=\"current\">Current password</label>\
        <input type=\"password\" id=\"current\" name=\"current\" autocomplete=\"current-password\" required>\
        <label for=\"new\">New password</label>\
        <input type=\"password\" id=\"new\" name=\"new\" autocomplete=\"new-password\" minlength=\"8\" required>\
        <label for=\"again\">New password again</label>\
        <input type=\"password\" id=\"again\" name=\"again\" autocomplete=\"new-password\" required>";
    format!(
        "<div class=\"card\" id=\"password\"><h2>Password</h2>\
         <p class=\"note\">A new password signs every app and session out.</p>{}</div>",
        b.form(did, "change-password", fields, "Change password", "")
    )
}

fn email_section(b: &Browser, a: &Account, emailed: bool) -> String {
    let did = &a.did;
    let state = match (&a.email, a.email_confirmed) {
        (None, _) => "No email address.".to_owned(),
        (Some(e), true) => format!("<strong>{}</strong> (confirmed)", esc(e)),
        (Some(e), false) => format!("<strong>{}</strong> (not confirmed)", esc(e)),
    };
    let code = "<label for=\"code\">Code</label>\
        <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"one-time-code\" autocapitalize=\"characters\">";
    let mut forms = String::new();
    if a.email.is_some() && !a.email_confirmed {
        forms.push_str(&b.form(
            did,
            "request-email-confirmation",
            "",
            "Send a confirmation code",
            "secondary",
        ));
        forms.push_str(&b.form(did, "confirm-email", code, "Confirm email", ""));
    }
    if a.email_confirmed {
        forms.push_str(&b.form(
            did,
            "request-email-update",
            "",
            "Send a code to change it",
            "secondary",
        ));
    }
    let fields = format!(
        "<label for=\"email\">New email address</label>\
         <input type=\"email\" id=\"email\" name=\"email\" autocomplete=\"email\" required>{}",
        if a.email_confirmed { code } else { "" }
    );
    forms.push_str(&b.form(did, "update-email", &fields, "Change email", ""));
    let travel = if emailed {
        "Codes are emailed to your address."
    } else {
        "This box sends no email: codes appear on its screen and on its setup page, \
         where the box's owner reads them for you."
    };
    format!(
        "<div class=\"card\" id=\"email-card\"><h2>Email</h2><p>{state}</p>\
         <p class=\"note\">{travel}</p>{forms}</div>"
    )
}

/// `POST /account`: sign in or out, or one change to an account signed in here.
pub(crate) async fn act(State(ctx): State<Ctx>, req: axum::extract::Request) -> Response {
    let pages::Submitted {
        peer,
        headers,
        fields: f,
    } = match pages::read_form(req).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let mut browser = Browser::read(&ctx, &headers);
    if !pages::check_csrf(&headers, &f) {
        let msg = "This form was not sent from this page (cookies blocked?). Try again.";
        return sign_in_page(&ctx, browser, Some(msg), StatusCode::FORBIDDEN).await;
    }
    let ip = pages::client_ip(&ctx, peer, &headers);
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if field("action") == "sign-in" {
        return match pages::password_sign_in(&ctx, &ip, field("identifier"), field("password"))
            .await
        {
            Ok(did) => {
                browser.device.remember(&did, crate::storage::unix_now());
                let cookie = browser.device.cookie(&ctx, &headers);
                browser.cookies.push(cookie);
                account_page(&ctx, browser, &did, None).await
            }
            Err((status, msg)) => sign_in_page(&ctx, browser, Some(&msg), status).await,
        };
    }
    let did = field("account").to_owned();
    if !browser.device.has(&did) {
        let msg = "Sign in to this account first.";
        return sign_in_page(&ctx, browser, Some(msg), StatusCode::UNAUTHORIZED).await;
    }
    if field("action") == "sign-out" {
        browser.device.accounts.retain(|(d, _)| *d != did);
        let cookie = browser.device.cookie(&ctx, &headers);
        browser.cookies.push(cookie);
        return sign_in_page(&ctx, browser, None, StatusCode::OK).await;
    }
    let notice = change(&ctx, &ip, &did, &f).await;
    account_page(&ctx, browser, &did, Some(notice)).await
}

/// One change to the account `did` (signed in on this browser).
async fn change(ctx: &Ctx, ip: &str, did: &str, f: &HashMap<String, String>) -> Notice {
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let session = Session::new(did.to_owned(), Scope::Access);
    let done = |m: &str| Ok(Notice::Done(m.to_owned()));
    let codes = if ctx.mailer.is_some() {
        "A code is on its way to your email address."
    } else {
        "A code is waiting on the box's screen and setup page: ask the box's owner for it."
    };
    let result: Result<Notice, XrpcError> = match field("action") {
        "revoke-app" => match pds::signed_in::revoke_app(ctx, Some(did), field("grant")).await {
            Ok(true) => done("The app is signed out."),
            Ok(false) => done("That app was already signed out."),
            Err(e) => Err(e),
        },
        "create-app-password" => pds::sessions::create_app_password(
            ctx,
            &session,
            field("name"),
            f.contains_key("privileged"),
        )
        .await
        .map(|p| Notice::NewAppPassword {
            name: p.name,
            password: p.password,
        }),
        "revoke-app-password" => pds::sessions::revoke_app_password(ctx, &session, field("name"))
            .await
            .and_then(|_| done("The app password is revoked; apps using it are signed out.")),
        "end-session" => pds::signed_in::end_session(ctx, did, field("session"))
            .await
            .and_then(|_| done("That session is signed out.")),
        "change-password" => {
            change_password(ctx, ip, did, field("current"), field("new"), field("again")).await
        }
        "request-email-confirmation" => pds::accounts::request_email_confirmation(ctx, &session)
            .await
            .and_then(|_| done(codes)),
        "confirm-email" => match ctx.find_account(did).await {
            Ok(Some(a)) => pds::accounts::confirm_email(
                ctx,
                &session,
                a.email.as_deref().unwrap_or(""),
                field("code"),
            )
            .await
            .and_then(|_| done("Your email address is confirmed.")),
            Ok(None) => Err(XrpcError::named("AccountNotFound", "account not found")),
            Err(e) => Err(e),
        },
        "request-email-update" => pds::accounts::request_email_update(ctx, &session)
            .await
            .and_then(|_| done(codes)),
        "update-email" => {
            let code = Some(field("code")).filter(|c| !c.trim().is_empty());
            pds::accounts::update_email(ctx, &session, field("email"), code)
                .await
                .and_then(|_| done("Your email address is changed."))
        }
        other => Err(XrpcError::invalid_request(format!(
            "unknown action {other:?}"
        ))),
    };
    result.unwrap_or_else(|e| Notice::Failed(e.message))
}

async fn change_password(
    ctx: &Ctx,
    ip: &str,
    did: &str,
    current: &str,
    new: &str,
    again: &str,
) -> Result<Notice, XrpcError> {
    if new != again {
        return Ok(Notice::Failed(
            "The new passwords are not the same.".to_owned(),
        ));
    }
    if new.chars().count() < 8 {
        return Ok(Notice::Failed(
            "Choose a password of at least 8 characters.".to_owned(),
        ));
    }
    let new = pds::accounts::check_password(Some(new.to_owned()))?;
    match pds::sessions::authenticate(ctx, ip, did, current).await {
        Ok((_, Scope::Access, _)) => {}
        Ok(_) => {
            return Ok(Notice::Failed(
                "The current password is not right.".to_owned(),
            ))
        }
        Err(e) if e.error == "AuthenticationRequired" => {
            return Ok(Notice::Failed(
                "The current password is not right.".to_owned(),
            ))
        }
        Err(e) => return Ok(Notice::Failed(pages::sign_in_words(&e))),
    }
    pds::accounts::set_password(ctx, did, &new).await?;
    Ok(Notice::Done(
        "Password changed. Every app and session is signed out: sign in to them again with the new password."
            .to_owned(),
    ))
}

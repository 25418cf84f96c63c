//! The settings page (Settings › API / MCP): the create form, the key list, activity, and
//! creating a key.

use super::*;

/// What the create form held, and what was wrong with it.
#[derive(Debug, Default)]
pub(super) struct CreateForm {
    pub(super) name: String,
    pub(super) expiry: String,
    pub(super) expiry_date: String,
    pub(super) access: String,
    pub(super) scopes: Vec<String>,
    pub(super) errors: FieldErrors,
}

#[derive(Debug, Default)]
pub(super) struct FieldErrors {
    pub(super) name: Option<String>,
    pub(super) expiry: Option<String>,
    pub(super) access: Option<String>,
}

impl CreateForm {
    /// A form not sent yet: `access` chosen, `scopes` ticked, and the expiry the operator's
    /// policy allows (with a maximum lifetime, "No expiry" would only be refused: 30 days).
    pub(super) fn fresh(state: &AppState, access: &str, scopes: Vec<String>) -> Self {
        let expiry = match state.store().policy().max_lifetime {
            None => "none",
            Some(max) if max >= Duration::from_secs(30 * DAY) => "30d",
            Some(_) => "date",
        };
        Self {
            expiry: expiry.into(),
            access: access.into(),
            scopes,
            ..Self::default()
        }
    }

    /// Thirty days, when the operator's policy allows it and the form would start without an
    /// expiry (keys given to applications should end on their own).
    pub(super) fn expiring_in_30_days(mut self, state: &AppState) -> Self {
        let allowed = state
            .store()
            .policy()
            .max_lifetime
            .is_none_or(|max| max >= Duration::from_secs(30 * DAY));
        if self.expiry == "none" && allowed {
            self.expiry = "30d".into();
        }
        self
    }

    /// Sets the name field.
    pub(super) fn named(mut self, name: String) -> Self {
        self.name = name;
        self
    }

    pub(super) fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl FieldErrors {
    fn any(&self) -> bool {
        self.name.is_some() || self.expiry.is_some() || self.access.is_some()
    }
}

pub(super) struct ScopeChoice {
    pub(super) name: &'static str,
    pub(super) id: &'static str,
    pub(super) description: &'static str,
}

pub(super) struct ScopeGroup {
    pub(super) title: &'static str,
    pub(super) scopes: [ScopeChoice; 3],
}

pub(super) const SCOPE_GROUPS: [ScopeGroup; 2] = [
    ScopeGroup {
        title: "VPS",
        scopes: [
            ScopeChoice {
                name: "vps:read",
                id: "vps-read",
                description: "List servers, view status and metrics",
            },
            ScopeChoice {
                name: "vps:write",
                id: "vps-write",
                description: "Start, stop, reboot, reinstall, mount ISO, SSH execution",
            },
            ScopeChoice {
                name: "vps:manage",
                id: "vps-manage",
                description: "Create, upgrade, and delete servers",
            },
        ],
    },
    ScopeGroup {
        title: "Domains",
        scopes: [
            ScopeChoice {
                name: "domains:read",
                id: "domains-read",
                description: "List domains and view DNS records",
            },
            ScopeChoice {
                name: "domains:write",
                id: "domains-write",
                description: "Edit DNS records and domain settings",
            },
            ScopeChoice {
                name: "domains:manage",
                id: "domains-manage",
                description: "Register, transfer, and delete domains",
            },
        ],
    },
];

pub(super) const EXPIRY_CHOICES: [(&str, &str); 4] = [
    ("none", "No expiry"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("1y", "1 year"),
];

/// A key as the list shows it.
pub(super) struct KeyRow {
    id: String,
    name: String,
    last4: String,
    scopes: Vec<&'static str>,
    created_rel: String,
    created_exact: String,
    created_iso: String,
    expires_rel: Option<String>,
    expires_exact: String,
    last_used_rel: String,
    status: &'static str,
    revoked_by: Option<String>,
    /// The key this one replaced by a rotation: "name (sq_live_…last4)".
    replaces: Option<String>,
    /// The key that replaced this one.
    replaced_by: Option<String>,
    window: String,
    chart_url: String,
    detail_url: String,
    /// The last hour's totals, as text beside the chart.
    usage_text: String,
}

pub(super) struct EventRow {
    iso: String,
    exact: String,
    key_id: String,
    /// The key's name, while the key is known.
    name: Option<String>,
    action: String,
    source: String,
}

#[derive(Template)]
#[template(path = "dashboard/api.html")]
pub(super) struct ApiPage<'a> {
    signed_in: bool,
    csrf: String,
    form: &'a CreateForm,
    expiry_choices: &'a [(&'a str, &'a str)],
    scope_groups: &'a [ScopeGroup],
    keys: Vec<KeyRow>,
    sort: &'a str,
    activity: Vec<EventRow>,
    mcp_url: String,
    quota: String,
    lifetime_note: Option<String>,
    /// What was just done, to confirm it ("Key ci revoked ...").
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct SortQuery {
    sort: Option<String>,
    /// The key just revoked, to confirm it.
    revoked: Option<String>,
}

pub(super) async fn settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedIn { csrf, .. }: SignedIn,
    Query(query): Query<SortQuery>,
) -> Response {
    let form = CreateForm::fresh(&state, "read_only", Vec::new());
    let notice = query
        .revoked
        .as_deref()
        .and_then(|id| find(&state, id))
        .filter(|r| r.revoked_at.is_some())
        .map(|r| {
            format!(
                "Key {} (sq_live_…{}) revoked: every request with it is refused.",
                r.name, r.last4
            )
        });
    settings_page(
        &state,
        &headers,
        csrf,
        &form,
        query.sort.as_deref(),
        StatusCode::OK,
        notice,
    )
    .await
}

pub(super) async fn settings_page(
    state: &AppState,
    headers: &HeaderMap,
    csrf: String,
    form: &CreateForm,
    sort: Option<&str>,
    status: StatusCode,
    notice: Option<String>,
) -> Response {
    let now = state.now();
    let activity = state
        .core
        .keys
        .activity(ActivityRead::Both)
        .await
        .unwrap_or_default();
    let mut records = state.store().list();
    let sort = match sort {
        Some("last_used") => {
            // Never used first, then the longest unused: the keys to revoke come first.
            records.sort_by_key(|r| (r.last_used_at, r.created_at));
            "last_used"
        }
        Some("name") => {
            records.sort_by_key(|r| r.name.to_lowercase());
            "name"
        }
        _ => {
            records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
            "created"
        }
    };
    let rotations = Rotations::of(&records, &activity.replaces);
    let keys = records
        .iter()
        .map(|r| key_row(state, r, activity.revoked_by.get(&r.id()), &rotations, now))
        .collect();
    let names: std::collections::HashMap<KeyId, &str> =
        records.iter().map(|r| (r.id(), r.name.as_str())).collect();
    let events = activity
        .events
        .iter()
        .take(50)
        .map(|e| EventRow {
            iso: iso(e.at),
            exact: exact(e.at),
            key_id: e.key_id.to_string(),
            name: names.get(&e.key_id).map(|n| (*n).to_owned()),
            action: e.action.replace('_', " "),
            source: e.source.replace('_', " "),
        })
        .collect();
    let base = own_origin(state, headers).unwrap_or_default();
    page_with(
        status,
        &ApiPage {
            signed_in: true,
            csrf,
            form,
            expiry_choices: &EXPIRY_CHOICES,
            scope_groups: &SCOPE_GROUPS,
            keys,
            sort,
            activity: events,
            mcp_url: format!("{base}{}", crate::http::mcp::PATH),
            quota: quota_text(state.core.auth.quota()),
            lifetime_note: lifetime_note(state),
            notice,
        },
    )
}

/// Who replaced whom, as the data file recorded each rotation (a key rotated twice during its
/// grace is replaced by both of its replacements).
pub(super) struct Rotations {
    replaces: std::collections::HashMap<KeyId, KeyId>,
    replaced_by: std::collections::HashMap<KeyId, Vec<KeyId>>,
    shown: std::collections::HashMap<KeyId, String>,
}

impl Rotations {
    pub(super) fn of(
        records: &[KeyRecord],
        replaces: &std::collections::HashMap<KeyId, KeyId>,
    ) -> Self {
        let mut replaced_by: std::collections::HashMap<KeyId, Vec<KeyId>> =
            std::collections::HashMap::new();
        let created: std::collections::HashMap<KeyId, UnixTime> =
            records.iter().map(|r| (r.id(), r.created_at)).collect();
        let mut by_creation: Vec<(&KeyId, &KeyId)> = replaces.iter().collect();
        by_creation.sort_by_key(|(new, _)| (created.get(*new).copied(), **new));
        for (new, old) in by_creation {
            replaced_by.entry(*old).or_default().push(*new);
        }
        let shown = records
            .iter()
            .map(|r| (r.id(), format!("{} (sq_live_…{})", r.name, r.last4)))
            .collect();
        Self {
            replaces: replaces.clone(),
            replaced_by,
            shown,
        }
    }

    fn shown(&self, id: Option<&KeyId>) -> Option<String> {
        id.and_then(|id| self.shown.get(id)).cloned()
    }

    fn shown_all(&self, ids: Option<&Vec<KeyId>>) -> Option<String> {
        let shown: Vec<String> = ids?.iter().filter_map(|id| self.shown(Some(id))).collect();
        (!shown.is_empty()).then(|| shown.join(", "))
    }
}

/// The window's use of a key, as the list shows it ("2 / 60").
pub(super) fn window_text(state: &AppState, r: &KeyRecord, now: UnixTime) -> String {
    let quota = r.rate_limit.unwrap_or(state.core.auth.quota());
    if state.core.limiter.is_none() {
        let w = state.core.auth.window(r, now);
        format!("{} / {}", w.limit - w.remaining, w.limit)
    } else {
        // Counted in Redis: what this instance served this minute.
        let m = state.core.usage.last_hour(r.id(), now);
        let last = m.last().copied().unwrap_or([0; 3]);
        format!("{} / {} here", last[0] + last[1], quota.limit())
    }
}

/// The last hour's totals of a key, as the list shows them beside its chart.
pub(super) fn usage_text([granted, forbidden, limited]: [u64; 3]) -> String {
    format!("{granted} granted · {forbidden} refused (403) · {limited} limited (429)")
}

/// A key's last hour's totals: [granted, 403, 429].
fn hour_totals(state: &AppState, id: KeyId, now: UnixTime) -> [u64; 3] {
    crate::http::usage::totals(&state.core.usage.last_hour(id, now))
}

/// `GET /dashboard/settings/api/windows`: every key's window use and last hour's totals, for the
/// pages to refresh with their charts (`{"kid_…": {"window": "2 / 60", "usage": "2 granted · 0
/// refused (403) · 0 limited (429)", "granted": 2, "forbidden": 0, "limited": 0}}`).
pub(super) async fn windows(State(state): State<AppState>, _: SignedIn) -> Response {
    let now = state.now();
    let map: serde_json::Map<String, serde_json::Value> = state
        .store()
        .list()
        .iter()
        .map(|r| {
            let totals = hour_totals(&state, r.id(), now);
            let [granted, forbidden, limited] = totals;
            let row = serde_json::json!({
                "window": window_text(&state, r, now),
                "usage": usage_text(totals),
                "granted": granted,
                "forbidden": forbidden,
                "limited": limited,
            });
            (r.id().to_string(), row)
        })
        .collect();
    axum::Json(map).into_response()
}

pub(super) fn key_row(
    state: &AppState,
    r: &KeyRecord,
    revoked_by: Option<&String>,
    rotations: &Rotations,
    now: UnixTime,
) -> KeyRow {
    let replaced_by = rotations.shown_all(rotations.replaced_by.get(&r.id()));
    let status = match r.status(now) {
        KeyStatus::Active => "active",
        KeyStatus::Revoked => "revoked",
        // Ended by its rotation's grace, not by an expiry of its own.
        KeyStatus::Expired if replaced_by.is_some() => "rotated",
        KeyStatus::Expired => "expired",
    };
    let window = window_text(state, r, now);
    KeyRow {
        id: r.id().to_string(),
        name: r.name.clone(),
        last4: r.last4.as_str().to_owned(),
        scopes: r.scopes.names().collect(),
        created_rel: relative(r.created_at, now),
        created_exact: exact(r.created_at),
        created_iso: iso(r.created_at),
        expires_rel: r.expires_at.map(|t| relative(t, now)),
        expires_exact: r.expires_at.map(exact).unwrap_or_default(),
        last_used_rel: r
            .last_used_at
            .map_or_else(|| "never".to_owned(), |t| relative(t, now)),
        status,
        revoked_by: r.revoked_at.and(revoked_by).map(|s| s.replace('_', " ")),
        replaces: rotations.shown(rotations.replaces.get(&r.id())),
        replaced_by,
        window,
        chart_url: format!("/dashboard/settings/api/keys/{}/usage.svg", r.id()),
        detail_url: format!("/dashboard/settings/api/keys/{}/usage", r.id()),
        usage_text: usage_text(hour_totals(state, r.id(), now)),
    }
}

pub(super) const DAY: u64 = 86_400;

/// When the expiry choice says the key expires, or the message for the field.
pub(super) fn expiry_of(fields: &Fields, now: UnixTime) -> Result<Option<UnixTime>, String> {
    match field(fields, "expiry").unwrap_or("none") {
        "none" => Ok(None),
        "30d" => Ok(Some(now.plus_secs(30 * DAY))),
        "90d" => Ok(Some(now.plus_secs(90 * DAY))),
        "1y" => Ok(Some(now.plus_secs(365 * DAY))),
        "date" => {
            let text = field(fields, "expiry_date").unwrap_or("");
            // The key works through the chosen day (UTC).
            parse_date(text)
                .map(|day| Some(UnixTime::from_secs((day + 1) * DAY)))
                .ok_or_else(|| "Pick a date, as 2027-01-31.".to_owned())
        }
        _ => Err("Choose when the key expires.".to_owned()),
    }
}

/// The scopes the access choice gives, or the message for the field.
pub(super) fn scopes_of(fields: &Fields) -> Result<Scopes, String> {
    match field(fields, "access").unwrap_or("") {
        "full" => Ok(Preset::Full.scopes()),
        "read_only" => Ok(Preset::ReadOnly.scopes()),
        "custom" => {
            let mut scopes = Scopes::empty();
            for (_, name) in fields.iter().filter(|(n, _)| n == "scope") {
                scopes |= Scopes::parse_name(name).map_err(|e| capitalized(&e.to_string()))?;
            }
            if scopes.is_empty() {
                return Err("Pick at least one scope.".to_owned());
            }
            Ok(scopes)
        }
        _ => Err("Choose Full access, Read only or Custom.".to_owned()),
    }
}

/// The create form's fields, judged: every field at once, so that every error shows next to its
/// field, with the operator's lifetime policy; the new key when all are right. The store is still
/// the last judge when the key is made ([`place_error`]).
pub(super) fn judge(
    state: &AppState,
    fields: &Fields,
    now: UnixTime,
) -> (CreateForm, Option<NewKey>) {
    let mut form = CreateForm {
        name: field(fields, "name").unwrap_or("").to_owned(),
        expiry: field(fields, "expiry").unwrap_or("none").to_owned(),
        expiry_date: field(fields, "expiry_date").unwrap_or("").to_owned(),
        access: field(fields, "access").unwrap_or("").to_owned(),
        scopes: fields
            .iter()
            .filter(|(n, _)| n == "scope")
            .map(|(_, v)| v.clone())
            .collect(),
        errors: FieldErrors::default(),
    };
    let policy = state.store().policy();
    let expiry = match expiry_of(fields, now) {
        Ok(Some(t)) if t <= now => Err("Expiry time must be in the future.".to_owned()),
        Ok(t) => policy
            .check(t, now)
            .map(|()| t)
            .map_err(|e| capitalized(&e.to_string())),
        Err(e) => Err(e),
    };
    let expiry = expiry
        .map_err(|e| form.errors.expiry = Some(e))
        .ok()
        .flatten();
    let scopes = scopes_of(fields)
        .map_err(|e| form.errors.access = Some(e))
        .ok();
    if let Err(e) = NewKey::new(form.name.clone(), Scopes::VPS_READ).generate(now) {
        form.errors.name = Some(capitalized(&e.to_string()));
    }
    let new = match (scopes, form.errors.any()) {
        (Some(scopes), false) => {
            let mut new = NewKey::new(form.name.clone(), scopes);
            if let Some(t) = expiry {
                new = new.expires_at(t);
            }
            Some(new)
        }
        _ => None,
    };
    (form, new)
}

/// Puts the store's refusal of a judged key next to the field it is about.
pub(super) fn place_error(form: &mut CreateForm, e: &InvalidRecord) {
    let message = capitalized(&e.to_string());
    match e {
        InvalidRecord::EmptyName
        | InvalidRecord::NameTooLong { .. }
        | InvalidRecord::ControlCharacter => form.errors.name = Some(message),
        InvalidRecord::EmptyScopes => form.errors.access = Some(message),
        _ => form.errors.expiry = Some(message),
    }
}

pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    CheckedForm { cookie: c, fields }: CheckedForm,
) -> Response {
    let now = state.now();
    let (mut form, new) = judge(&state, &fields, now);
    let mut issued = None;
    if let Some(new) = new {
        match state.core.keys.create(&new, now, Source::Dashboard).await {
            Ok(i) => issued = Some(i),
            Err(ChangeError::Invalid(e)) => place_error(&mut form, &e),
            Err(e) => return change_failed(e),
        }
    }
    let Some(issued) = issued else {
        let csrf = state.dashboard.sessions.csrf(&c, now).unwrap_or_default();
        return settings_page(
            &state,
            &headers,
            csrf,
            &form,
            None,
            StatusCode::BAD_REQUEST,
            None,
        )
        .await;
    };
    state.dashboard.sessions.set_reveal(
        &c,
        Reveal {
            key: issued.key.expose_secret(),
            id: issued.record.id().to_string(),
            name: issued.record.name.clone(),
        },
        now,
    );
    Redirect::to("/dashboard/settings/api/created").into_response()
}

/// What the operator's lifetime policy asks of every key, for the forms that make one.
pub(super) fn lifetime_note(state: &AppState) -> Option<String> {
    state.store().policy().max_lifetime.map(|max| {
        format!(
            "This server requires every key to expire, at most {} after it is created.",
            sitequest_auth::Lifetime(max)
        )
    })
}

/// `60 per minute`, `100 per 30 seconds`.
pub(super) fn quota_text(q: sitequest_auth::Quota) -> String {
    if q.period_secs() == 60 {
        format!("{} per minute", q.limit())
    } else {
        format!("{} per {} seconds", q.limit(), q.period_secs())
    }
}

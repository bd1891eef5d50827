//! A test double of the agent: serves `org.talaria.Agent1` on the private bus and keeps the
//! real protocol — request ids are idempotency keys and turn ids, `TurnEvent`s go to the
//! connection that last submitted the id, a finished turn re-emits its `done`, a turn a crash
//! interrupted resumes from its checkpoint (the deltas already sent) when it is submitted
//! again. Its answer to `text` is `echo: text`, sent word by word.
//!
//! The [`World`] outlives agent processes ("incarnations"): a test can kill the agent mid-turn
//! (its bus connection closes, exactly what a crash looks like to the bus) and start a new
//! one that finds the checkpoint. `runs` counts how often a request id was started from
//! scratch — the number the gateway must keep at one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talaria_bus::turn::TurnEvent;
use talaria_bus::{StopReason, TurnErrorKind, VariantDict, names, paths};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use zbus::message::Header;
use zbus::{Connection, interface};

/// What the next new turn does after its first delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Stops and never continues in this incarnation (the test kills the agent).
    Die,
    /// Waits for [`World::release`].
    Hold,
}

#[derive(Debug, Clone)]
struct Turn {
    session: String,
    text: String,
    pieces: Vec<String>,
    /// Checkpoint: pieces already sent.
    emitted: usize,
    /// The terminal event, once the turn ended: (kind, payload).
    end: Option<(String, String)>,
    incarnation: u64,
    submitter: String,
    stall: Option<Stall>,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashSet<String>,
    turns: HashMap<String, Turn>,
    runs: HashMap<String, usize>,
    resumes: HashMap<String, usize>,
    submissions: HashMap<String, usize>,
    stall_next: Option<Stall>,
    incarnation: u64,
}

/// Everything the agent remembers across restarts, and the test's handles on it.
#[derive(Debug, Default)]
pub struct World {
    state: Mutex<State>,
    /// Notified when a stalled turn has sent its first delta.
    pub mid_turn: Notify,
    release: Notify,
}

impl World {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The next new turn stalls after its first delta.
    pub fn stall_next(&self, stall: Stall) {
        self.state.lock().unwrap().stall_next = Some(stall);
    }

    /// Lets a held turn continue.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// How many times `request_id` was started from scratch.
    pub fn runs(&self, request_id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .runs
            .get(request_id)
            .copied()
            .unwrap_or(0)
    }

    /// How many times `request_id` was resumed after a crash.
    pub fn resumes(&self, request_id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .resumes
            .get(request_id)
            .copied()
            .unwrap_or(0)
    }

    /// How many `SubmitTurn` calls carried `request_id`.
    pub fn submissions(&self, request_id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .submissions
            .get(request_id)
            .copied()
            .unwrap_or(0)
    }

    /// Every request id the agent has seen.
    pub fn request_ids(&self) -> Vec<String> {
        self.state.lock().unwrap().turns.keys().cloned().collect()
    }

    /// The session and text a request id was submitted with.
    pub fn turn(&self, request_id: &str) -> Option<(String, String)> {
        self.state
            .lock()
            .unwrap()
            .turns
            .get(request_id)
            .map(|t| (t.session.clone(), t.text.clone()))
    }

    /// Whether the turn has ended (its answer is stored by the agent).
    pub fn finished(&self, request_id: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .turns
            .get(request_id)
            .is_some_and(|t| t.end.is_some())
    }

    /// Forgets every session, as if the agent's database had been replaced.
    pub fn forget_sessions(&self) {
        self.state.lock().unwrap().sessions.clear();
    }
}

/// One incarnation of the agent, connected to the bus.
pub struct FakeAgent {
    connection: Connection,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

struct AgentDouble {
    world: Arc<World>,
    incarnation: u64,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

fn option_string(options: &VariantDict, key: &str) -> Option<String> {
    options.get(key).and_then(|v| String::try_from(&**v).ok())
}

#[interface(name = "org.talaria.Agent1")]
impl AgentDouble {
    #[zbus(out_args("turn_id"))]
    async fn submit_turn(
        &self,
        session_key: String,
        text: String,
        options: VariantDict,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, talaria_bus::Error> {
        let submitter = header.sender().unwrap().to_string();
        let request_id = option_string(&options, "request_id").unwrap_or_else(|| {
            static NEXT: AtomicU64 = AtomicU64::new(1);
            format!("turn-{}", NEXT.fetch_add(1, Ordering::SeqCst))
        });
        let create = options
            .get("create")
            .and_then(|v| bool::try_from(&**v).ok())
            .unwrap_or(false);
        let mut state = self.world.state.lock().unwrap();
        *state.submissions.entry(request_id.clone()).or_default() += 1;
        if let Some(turn) = state.turns.get_mut(&request_id) {
            turn.submitter = submitter.clone();
            if let Some((kind, payload)) = turn.end.clone() {
                // Finished: the stored answer again, no deltas.
                let connection = connection.clone();
                let id = request_id.clone();
                self.spawn(async move {
                    emit(&connection, &submitter, &id, &kind, &payload).await;
                });
            } else if turn.incarnation != self.incarnation {
                // A crash interrupted it: resume from the checkpoint.
                turn.incarnation = self.incarnation;
                *state.resumes.entry(request_id.clone()).or_default() += 1;
                drop(state);
                self.start(connection, &request_id);
            }
            // Still running here: the remaining events go to the new submitter.
            return Ok(request_id);
        }
        if !state.sessions.contains(&session_key) {
            if !create {
                return Err(talaria_bus::Error::UnknownSession(format!(
                    "no session {session_key}"
                )));
            }
            state.sessions.insert(session_key.clone());
        }
        let answer = format!("echo: {text}");
        let pieces = answer.split_inclusive(' ').map(str::to_owned).collect();
        let stall = state.stall_next.take();
        state.turns.insert(
            request_id.clone(),
            Turn {
                session: session_key,
                text,
                pieces,
                emitted: 0,
                end: None,
                incarnation: self.incarnation,
                submitter,
                stall,
            },
        );
        *state.runs.entry(request_id.clone()).or_default() += 1;
        drop(state);
        self.start(connection, &request_id);
        Ok(request_id)
    }

    async fn cancel_turn(&self, _turn_id: String) {}

    #[zbus(signal)]
    async fn turn_event(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        turn_id: &str,
        kind: &str,
        payload: &str,
    ) -> zbus::Result<()>;
}

async fn emit(connection: &Connection, to: &str, turn_id: &str, kind: &str, payload: &str) {
    let _ = connection
        .emit_signal(
            Some(to),
            paths::AGENT,
            names::AGENT,
            "TurnEvent",
            &(turn_id, kind, payload),
        )
        .await;
}

impl AgentDouble {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.lock().unwrap().push(tokio::spawn(task));
    }

    fn start(&self, connection: &Connection, request_id: &str) {
        let connection = connection.clone();
        let world = Arc::clone(&self.world);
        let incarnation = self.incarnation;
        let id = request_id.to_owned();
        self.spawn(async move { run_turn(connection, world, incarnation, id).await });
    }
}

async fn run_turn(connection: Connection, world: Arc<World>, incarnation: u64, id: String) {
    loop {
        let step = {
            let mut state = world.state.lock().unwrap();
            let turn = state.turns.get_mut(&id).unwrap();
            if turn.incarnation != incarnation {
                return;
            }
            if turn.emitted < turn.pieces.len() {
                let piece = turn.pieces[turn.emitted].clone();
                turn.emitted += 1;
                let stall = if turn.emitted == 1 {
                    turn.stall.take()
                } else {
                    None
                };
                Some((turn.submitter.clone(), piece, stall))
            } else {
                None
            }
        };
        let Some((to, piece, stall)) = step else {
            break;
        };
        let (kind, payload) = TurnEvent::TextDelta { text: piece }.to_wire().unwrap();
        emit(&connection, &to, &id, kind, &payload).await;
        match stall {
            Some(Stall::Die) => {
                world.mid_turn.notify_one();
                std::future::pending::<()>().await;
            }
            Some(Stall::Hold) => {
                world.mid_turn.notify_one();
                world.release.notified().await;
            }
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let (to, kind, payload) = {
        let mut state = world.state.lock().unwrap();
        let turn = state.turns.get_mut(&id).unwrap();
        let event = if turn.text.contains("please fail") {
            TurnEvent::Error {
                message: "the model provider failed".into(),
                kind: TurnErrorKind::Turn,
                alive: false,
            }
        } else {
            TurnEvent::Done {
                text: turn.pieces.concat(),
                stop: StopReason::Completed,
                session_key: turn.session.clone(),
            }
        };
        let (kind, payload) = event.to_wire().unwrap();
        let kind = kind.to_owned();
        turn.end = Some((kind.clone(), payload.clone()));
        (turn.submitter.clone(), kind, payload)
    };
    emit(&connection, &to, &id, &kind, &payload).await;
}

impl FakeAgent {
    /// A new incarnation of the agent on the bus at `address`.
    pub async fn start(address: &str, world: &Arc<World>) -> Self {
        let incarnation = {
            let mut state = world.state.lock().unwrap();
            state.incarnation += 1;
            state.incarnation
        };
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let double = AgentDouble {
            world: Arc::clone(world),
            incarnation,
            tasks: Arc::clone(&tasks),
        };
        let connection = zbus::connection::Builder::address(address)
            .serve_at(paths::AGENT, double)
            .name(names::AGENT)
            .build()
            .await
            .unwrap();
        Self { connection, tasks }
    }

    /// Dies: every turn stops where it is and the connection closes.
    pub async fn kill(self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        self.connection.close().await.unwrap();
    }
}

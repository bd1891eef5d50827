mod filesystem;
mod limits;
mod network;
mod process;
mod protected;
mod refusal;
mod support;
mod syscalls;

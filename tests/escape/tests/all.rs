//! The escape suite: every case runs on both backends, through `Executor::run` with the real
//! helpers, as `local::<case>` and `oci::<case>`. The table below is the list of cases; the
//! README documents each one (a test checks they agree).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod suite;

/// One `#[test]` per case per backend, and the list of case names. A case written
/// `name [oci_ignore = "ESCAPE: …"]` is ignored on that backend only: an escape found and
/// reported, still runnable with `--ignored`.
macro_rules! escape_cases {
    ($($name:ident $([oci_ignore = $oci_ignore:literal])?),* $(,)?) => {
        /// Every case, in table order.
        const CASES: &[&str] = &[$(stringify!($name)),*];

        mod local {
            $(
                #[test]
                fn $name() {
                    crate::suite::case::run(
                        crate::suite::world::Backend::Local,
                        stringify!($name),
                        crate::suite::cases::$name(),
                    );
                }
            )*
        }

        mod oci {
            $(
                #[test]
                $(#[ignore = $oci_ignore])?
                fn $name() {
                    crate::suite::case::run(
                        crate::suite::world::Backend::Oci,
                        stringify!($name),
                        crate::suite::cases::$name(),
                    );
                }
            )*
        }
    };
}

escape_cases! {
    // Writes outside the roots.
    write_outside_absolute,
    write_inside_absolute,
    write_outside_relative,
    write_inside_relative,
    write_outside_dotdot,
    write_inside_dotdot,
    write_outside_symlink_dir,
    write_outside_symlink_file,
    write_inside_symlink,
    write_outside_dangling_symlink,
    write_inside_dangling_symlink,
    write_outside_own_symlink,
    hardlink_outside_in,
    hardlink_inside_out,
    hardlink_inside,
    rename_outside_in,
    rename_inside_out,
    rename_inside,
    exchange_across_boundary,
    exchange_inside,
    write_via_proc_self_root,
    write_via_proc_self_root_inside,
    write_via_proc_pid_cwd,
    write_via_proc_self_cwd,
    mkdir_outside,
    mkdir_inside,
    unlink_outside,
    unlink_inside,
    write_system_directory,
    write_scratch_directory,
    truncate_read_root,
    truncate_inside,
    read_outside,
    read_inside,
    read_talaria_home,
    write_talaria_home,
    read_skills,
    // Protected paths.
    hooks_create,
    hooks_overwrite,
    hooks_chmod,
    hooks_rename_away,
    hooks_replace_with_symlink,
    hooks_hardlink_out,
    git_config_overwrite,
    git_dir_swap,
    git_head_write,
    hooks_missing_create,
    hooks_missing_replace_placeholder,
    mkdir_unprotected_hooks,
    skills_write,
    skills_overwrite,
    skills_replace_with_symlink,
    protected_umount,
    protected_mount_over,
    // Swap races.
    swap_race_outside,
    swap_race_protected,
    swap_race_inside,
    swap_race_host_outside,
    swap_race_host_protected,
    swap_race_host_inside,
    // Network.
    tcp_connect_loopback,
    tcp_connect_host_address,
    tcp6_connect_loopback,
    tcp_connect_internet,
    tcp_listen,
    udp_send_loopback,
    dns_query_loopback,
    dns_query_resolver,
    raw_socket,
    packet_socket,
    netlink_socket,
    vsock_socket,
    vsock_connect_host,
    io_uring,
    unix_socket_own,
    unix_abstract_host,
    unix_abstract_own,
    unix_pathname_host,
    unix_host_service,
    unix_dbus_system_bus,
    unix_pathname_own,
    // Privilege.
    setuid_root_binary,
    setuid_other_user_binary,
    setuid_binary_in_system_dir,
    setuid_chmod,
    setgid_chmod,
    chmod_plain,
    setuid_create,
    setgid_create,
    create_plain_mode,
    read_root_only_in_read_root [oci_ignore = "ESCAPE: the container's processes run as root (no user namespace when the helper is root), so a root-only file under a read root is readable; the local backend runs the command as nobody"],
    read_public_in_read_root,
    read_etc_shadow,
    write_root_owned_workspace_file,
    create_in_workspace_stays_root_owned,
    git_commondir,
    git_config_worktree,
    git_info_attributes,
    git_worktrees,
    git_modules,
    git_new_nested_repo,
    git_module_config_changed,
    git_commit_files,
    exec_plain_copy,
    no_new_privs,
    no_capabilities,
    capset_raise,
    ptrace_parent,
    process_vm_writev_parent,
    process_vm_readv_parent,
    parent_mem_write,
    runtime_binary_overwrite,
    signal_host_process,
    signal_own_group,
    tiocsti_stdin,
    tiocsti_stdout,
    ioctl_allowed,
    open_controlling_tty,
    inherited_descriptor,
    stdio_open,
    secrets_in_environment,
    ld_preload_not_inherited,
    passed_environment,
    secret_in_proc_environ,
    // Kernel interfaces.
    unshare_user_namespace,
    unshare_mount_namespace,
    chroot_breakout,
    mknod_block_device,
    open_by_handle,
    kernel_keyring,
    userfaultfd,
    personality_no_randomize,
    personality_query,
    sysctl_core_pattern,
    sysfs_uevent_helper,
    cgroup_escape,
    sysrq_trigger,
    kmsg_inject,
    dev_null_write,
    // Resources.
    fork_bomb,
    fork_within_limit,
    memory_hog,
    memory_within_limit,
    timeout_kills_tree,
    finishes_within_timeout,
    output_flood,
    output_over_limit_below_flood,
    output_within_limit,
    file_size_limit,
    file_within_size_limit,
    open_files_limit,
    open_files_within_limit,
}

#[test]
fn readme_lists_every_case() {
    let readme = include_str!("../README.md");
    let cases_section = readme
        .split("\n## Cases\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a `## Cases` section");
    let listed: Vec<&str> = cases_section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    for case in CASES {
        assert!(listed.contains(case), "README.md does not list {case}");
    }
    for case in &listed {
        assert!(
            CASES.contains(case),
            "README.md lists {case}, which is not a case"
        );
    }
    assert_eq!(listed.len(), CASES.len(), "README.md lists a case twice");
}

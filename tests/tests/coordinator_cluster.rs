//! Three `spoor coordinator` processes on loopback form one Raft group; an
//! ingest node and a query node use it through different coordinators, and
//! ingest keeps committing after the leader it was talking to is killed.

use std::time::{Duration, Instant};

use spoor_tests::{Spoor, SpoorOptions, free_port};

async fn status(node: &Spoor) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::get(format!("{}/v1/status", node.http))
        .await?
        .json()
        .await?)
}

async fn post_events(node: &Spoor, body: &'static str) -> anyhow::Result<serde_json::Value> {
    // Retried while an election settles (503 catalog_unavailable is retryable).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/ingest/fw", node.http))
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let json: serde_json::Value = resp.json().await?;
        if status.is_success() {
            return Ok(json);
        }
        anyhow::ensure!(
            status == reqwest::StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline,
            "{status}: {json}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_coordinator_processes_survive_losing_the_leader() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let members = format!(
        "coordinator.initial_members=[{}]",
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("\"{}@http://127.0.0.1:{p}\"", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    );
    let opts = SpoorOptions::default();
    let mut coordinators = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let sets = vec![
            members.clone(),
            format!("node.id={}", i + 1),
            format!("node.grpc_addr=\"127.0.0.1:{port}\""),
            "coordinator.heartbeat_interval_ms=100".into(),
            "coordinator.election_timeout_min_ms=500".into(),
            "coordinator.election_timeout_max_ms=1000".into(),
        ];
        // Start all three before any waits for a leader: the role waits for one
        // before printing its ready line, so spawn them on threads.
        let dir = dir.path().join(format!("c{}", i + 1));
        let opts = opts.clone();
        coordinators.push(std::thread::spawn(move || {
            Spoor::role("coordinator", &dir, &sets, &opts)
        }));
    }
    let mut coordinators: Vec<Spoor> = coordinators
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect::<Result<_, _>>()?;

    let leader = status(&coordinators[0]).await?["catalog"]["leader_id"]
        .as_u64()
        .expect("leader");
    let followers: Vec<usize> = (0..3).filter(|i| *i as u64 + 1 != leader).collect();
    let lake = dir.path().join("lake");
    let lake_url = format!("storage.url=\"file://{}\"", lake.display());
    let via = |i: usize| format!("catalog.endpoint=\"http://127.0.0.1:{}\"", ports[i]);
    // Ingest names the leader first, then a follower: when the leader dies it
    // moves on. Query talks to the other follower, which serves reads locally.
    let ingest_endpoints = format!(
        "catalog.endpoint=\"http://127.0.0.1:{},http://127.0.0.1:{}\"",
        ports[leader as usize - 1],
        ports[followers[0]]
    );
    let ingest = Spoor::role(
        "ingest",
        &dir.path().join("ingest"),
        &[lake_url.clone(), ingest_endpoints, "node.id=11".into()],
        &opts,
    )?;
    let query = Spoor::role(
        "query",
        &dir.path().join("query"),
        &[lake_url, via(followers[1]), "node.id=21".into()],
        &opts,
    )?;

    let resp = post_events(
        &ingest,
        "{\"src_ip\":\"10.0.0.1\"}\n{\"src_ip\":\"10.0.0.2\"}\n",
    )
    .await?;
    assert_eq!(resp["accepted"], 2, "{resp}");
    query
        .wait_for("SELECT count(*) FROM events", 2, Duration::from_secs(20))
        .await?;

    // Kill the leader process.
    coordinators[leader as usize - 1].kill()?;
    let started = Instant::now();
    let resp = post_events(&ingest, "{\"src_ip\":\"10.0.0.3\"}\n").await?;
    assert_eq!(resp["accepted"], 1, "{resp}");
    eprintln!(
        "first commit after killing the leader took {:?}",
        started.elapsed()
    );
    query
        .wait_for("SELECT count(*) FROM events", 3, Duration::from_secs(20))
        .await?;

    // The operator replaces the dead coordinator: a joining node is added,
    // the dead one removed, with the `spoor cluster` commands.
    let port4 = free_port()?;
    let _fourth = Spoor::role(
        "coordinator",
        &dir.path().join("c4"),
        &[
            "node.id=4".into(),
            format!("node.grpc_addr=\"127.0.0.1:{port4}\""),
            "coordinator.join=true".into(),
        ],
        &opts,
    )?;
    let survivor = format!("http://127.0.0.1:{}", ports[followers[0]]);
    let cli = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let out = std::process::Command::new(spoor_tests::spoor_binary()?)
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "spoor {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let url4 = format!("http://127.0.0.1:{port4}");
    let added = cli(&[
        "cluster",
        "add-node",
        "--coordinator",
        &survivor,
        "--id",
        "4",
        "--url",
        &url4,
    ])?;
    assert!(
        added["voters"]
            .as_array()
            .expect("voters")
            .contains(&4.into()),
        "{added}"
    );
    let dead = leader.to_string();
    let removed = cli(&[
        "cluster",
        "remove-node",
        "--coordinator",
        &survivor,
        "--id",
        &dead,
    ])?;
    let voters: Vec<u64> = removed["voters"]
        .as_array()
        .expect("voters")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    assert_eq!(voters.len(), 3, "{removed}");
    assert!(
        !voters.contains(&leader) && voters.contains(&4),
        "{removed}"
    );
    let resp = post_events(&ingest, "{\"src_ip\":\"10.0.0.4\"}\n").await?;
    assert_eq!(resp["accepted"], 1, "{resp}");
    query
        .wait_for("SELECT count(*) FROM events", 4, Duration::from_secs(20))
        .await?;

    // Both survivors hold every acknowledged file, once, with the same sequences.
    for i in &followers {
        let s = status(&coordinators[*i]).await?;
        assert_eq!(
            spoor_tests::tenant_file_count(&s, "default"),
            Some(3),
            "{s}"
        );
        assert_eq!(s["catalog"]["tenants"][0]["last_sequence"], 3, "{s}");
        assert_ne!(s["catalog"]["leader_id"].as_u64(), Some(leader), "{s}");
    }

    // The operator hands leadership to the new node, then reads the cluster
    // with `spoor status` through the query node: every role is a member, and
    // the leader reports each coordinator's replication lag.
    let moved = cli(&[
        "cluster",
        "transfer-leader",
        "--coordinator",
        &survivor,
        "--id",
        "4",
    ])?;
    assert_eq!(moved["leader_id"], 4, "{moved}");
    let out = std::process::Command::new(spoor_tests::spoor_binary()?)
        .args(["status", "--endpoint", &query.http])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "spoor status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let cluster = &s["cluster"];
    assert_eq!(cluster["leader_id"], 4, "{s}");
    let roles: Vec<(u64, String, bool)> = cluster["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["member"]["info"]["node_id"].as_u64().unwrap_or(0),
                m["member"]["info"]["role"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                m["member"]["alive"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert!(roles.contains(&(11, "ingest".into(), true)), "{roles:?}");
    assert!(roles.contains(&(21, "query".into(), true)), "{roles:?}");
    let coordinators = cluster["coordinators"].as_array().expect("coordinators");
    assert_eq!(coordinators.len(), 3, "{cluster}");
    assert!(
        coordinators.iter().all(|c| c["lag"].is_u64()),
        "lag per coordinator: {cluster}"
    );
    Ok(())
}

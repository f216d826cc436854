import Glibc
import Testing
import TuppSystem
import TuppTestSupport

/// docs/fleet.md's playbook on a fleet of three hosts simulated on this machine: each host
/// is its own tupp installation (state directory, pool file, bridge, subnet), reached with
/// `ansible_connection: local`.
@Suite(.serialized) struct AnsibleFleetTests {
    static let hostNames = ["host1", "host2", "host3"]

    func ready() throws -> Bool {
        try Host.require(.root, .btrfs, .command("/bin/busybox"), tool("/usr/bin/ansible-playbook"), tool("/usr/bin/ansible-galaxy"))
    }

    /// The docs' files written into `directory`, the inventory pointing at `hosts`, and the
    /// collection installed with the docs' command.
    func prepare(_ directory: String, hosts: [Installation], ansible: Ansible) throws {
        let docs = try DocExamples("fleet.md")
        try Files.writeAtomically("\(directory)/site.yaml.j2", text: try docs("site.yaml.j2"), mode: 0o644)
        try Files.writeAtomically("\(directory)/rollout.yml", text: try docs("rollout.yml"), mode: 0o644)
        var inventory = try docs("inventory.yml")
        for (n, host) in hosts.enumerated() {
            inventory = try DocExamples.substitute(inventory, [
                "/srv/fleet/host\(n + 1)": host.root.path,
                "fleet\(n + 1),": host.bridge + ",",
                "10.213.\(n + 1).0/24": host.subnet,
            ])
        }
        try Files.writeAtomically("\(directory)/inventory.yml", text: inventory, mode: 0o644)
        let install = try run(in: Built.repository, ["/bin/sh", "-ec", try docs("galaxy-install")], environment: ansible.environment)
        #expect(install.status == 0, "\(install)")
    }

    @Test func rolloutOnThreeHosts() throws {
        guard try ready() else { return }
        let hosts = try Self.hostNames.map { try Installation("fleet-\($0)") }
        let work = try TemporaryDirectory("tupp-fleet")
        defer {
            for host in hosts {
                destroy(host, manifests: ["\(host.root.path)/site.yaml"])
            }
            work.remove()
        }
        let ansible = Ansible(directory: work.path)
        try prepare(work.path, hosts: hosts, ansible: ansible)
        let docs = try DocExamples("fleet.md")

        // --check --diff: every host changed, each diff shown, nothing of tupp's created.
        let check = try ansible.command(try docs("check"))
        #expect(check.status == 0, "\(check)")
        for (name, host) in zip(Self.hostNames, hosts) {
            #expect(check.result("Converge the host", name) == "changed", "\(name): \(check)")
            #expect(host.inventory().isEmpty, "\(name): check mode changed the host:\n\(host.inventory())")
            #expect(!Files.exists("\(host.root.path)/site.yaml"), "check mode wrote the live manifest of \(name)")
        }
        #expect(check.output.stdout.components("+++ after: container.web will be created") == 3, "\(check)")
        #expect(check.output.stdout.contains("+network.bridge = \"\(hosts[1].bridge)\""), "\(check)")

        // The real run converges every host: pool mounted, bridge up, container running.
        let apply = try ansible.command(try docs("apply"))
        #expect(apply.status == 0, "\(apply)")
        var pids: [ProcessIdentity] = []
        for (name, host) in zip(Self.hostNames, hosts) {
            #expect(apply.result("Converge the host", name) == "changed", "\(name): \(apply)")
            #expect(apply.result("Every container runs before the next host starts", name) == "ok", "\(name): \(apply)")
            #expect(Files.exists("/sys/class/net/\(host.bridge)/bridge"), "\(name): bridge \(host.bridge) missing")
            #expect(MountInfo.mounts(under: host.root.path, in: try MountInfo.read()).contains { $0.mountPoint == "\(host.root.path)/pool" })
            let pid = try #require(try containerPID(host, "web"), "\(name): web not running")
            #expect(try hostname(ofPID: pid) == "web")
            pids.append(pid)
        }

        // Again: nothing to do anywhere.
        let again = try ansible.command(try docs("apply"))
        #expect(again.status == 0, "\(again)")
        for name in Self.hostNames { #expect(again.changedCount(name) == 0, "\(name): \(again)") }

        // Drift by hand on host2 only: exactly host2 is changed in check mode, and the diff
        // names the drift; check mode repairs nothing.
        #expect(try Spawn.run(["/usr/bin/nsenter", "-t", String(pids[1].pid), "-u", "/bin/hostname", "hacked"]).status == 0)
        let drift = try ansible.command(try docs("check"))
        #expect(drift.status == 0, "\(drift)")
        #expect(drift.result("Converge the host", "host1") == "ok", "\(drift)")
        #expect(drift.result("Converge the host", "host2") == "changed", "\(drift)")
        #expect(drift.result("Converge the host", "host3") == "ok", "\(drift)")
        #expect(drift.output.stdout.contains("container.web: hostname changed outside tupp"), "\(drift)")
        #expect(drift.output.stdout.contains("-hostname = \"hacked\"\n+hostname = \"web\""), "\(drift)")
        #expect(try hostname(ofPID: pids[1]) == "hacked")

        // A manifest with an error in src: the task fails with FILE:LINE:COL, nothing changes.
        let live = try #require(try Files.readText("\(hosts[0].root.path)/site.yaml"))
        let broken = "\(hosts[0].root.path)/broken.yaml"
        try Files.writeAtomically(broken, text: live.replacing("    stopTimeout: 2s\n", with: "    stopTimeout: 2s\n    hostname: changed\n    restrat: always\n"), mode: 0o644)
        try Files.writeAtomically("\(work.path)/broken.yml", text: """
            - hosts: host1
              gather_facts: false
              tasks:
                - name: Converge from a broken manifest
                  tupp.host.apply:
                    src: "{{ tupp_root }}/broken.yaml"
                    state_dir: "{{ tupp_state_dir }}"

            """, mode: 0o644)
        let failed = try ansible.command("ansible-playbook -i inventory.yml broken.yml")
        #expect(failed.status != 0, "\(failed)")
        #expect(failed.result("Converge from a broken manifest", "host1") == "fatal", "\(failed)")
        let line = try #require(try Files.readText(broken)).split(separator: "\n", omittingEmptySubsequences: false)
            .firstIndex { $0.contains("restrat") }.map { $0 + 1 }
        #expect(failed.output.stdout.contains("\(broken):\(line ?? 0):5: error: unknown key \\\"restrat\\\""), "\(failed)")
        #expect(try containerPID(hosts[0], "web") == pids[0])
        #expect(try hostname(ofPID: pids[0]) == "web")

        // The real run repairs host2's drift in place and changes nothing else.
        let repair = try ansible.command(try docs("apply"))
        #expect(repair.status == 0, "\(repair)")
        #expect(repair.changedCount("host1") == 0 && repair.changedCount("host3") == 0, "\(repair)")
        #expect(repair.result("Converge the host", "host2") == "changed", "\(repair)")
        #expect(try hostname(ofPID: pids[1]) == "web")
        #expect(try containerPID(hosts[1], "web") == pids[1])

        // An apply that fails half way on host3: the task fails listing what was applied and
        // what failed, and what was applied is really there.
        let live3 = try #require(try Files.readText("\(hosts[2].root.path)/site.yaml"))
        try Files.writeAtomically("\(hosts[2].root.path)/partial.yaml", text: live3 + """
              extra:
                image: box
                command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
                stopTimeout: 2s
              broken:
                image: box
                command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
                mounts: [{ type: bind, source: \(hosts[2].root.path)/no-such-directory, target: /data }]

            """, mode: 0o644)
        try Files.writeAtomically("\(work.path)/partial.yml", text: """
            - hosts: host3
              gather_facts: false
              tasks:
                - name: Converge to a manifest that cannot be applied whole
                  tupp.host.apply:
                    src: "{{ tupp_root }}/partial.yaml"
                    state_dir: "{{ tupp_state_dir }}"

            """, mode: 0o644)
        let partial = try ansible.command("ansible-playbook -i inventory.yml partial.yml")
        #expect(partial.status != 0, "\(partial)")
        #expect(partial.result("Converge to a manifest that cannot be applied whole", "host3") == "fatal", "\(partial)")
        #expect(partial.output.stdout.contains("tupp apply stopped: 1 applied, 1 failed, 0 not attempted. container.broken: open bind source"), "\(partial)")
        #expect(partial.output.stdout.contains("\"applied\": [\"container.extra\"]"), "\(partial)")
        #expect(partial.output.stdout.contains("\"failed_resources\": [{\"address\": \"container.broken\""), "\(partial)")
        #expect(partial.output.stdout.contains("\"changed\": true"), "\(partial)")
        let extra = try #require(try containerPID(hosts[2], "extra"))
        #expect(try hostname(ofPID: extra) == "extra")

        // The rollout again: host3 back to its manifest (extra pruned), the others untouched.
        let back = try ansible.command(try docs("apply"))
        #expect(back.status == 0, "\(back)")
        #expect(back.changedCount("host1") == 0 && back.changedCount("host2") == 0, "\(back)")
        #expect(back.result("Converge the host", "host3") == "changed", "\(back)")
        #expect(!extra.isAlive, "extra's process survived the prune")
    }
}

extension String {
    func components(_ needle: String) -> Int { split(separator: needle, omittingEmptySubsequences: false).count - 1 }
}

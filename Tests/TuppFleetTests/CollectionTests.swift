import Glibc
import Testing
import TuppBase
import TuppPlan
import TuppSystem
import TuppTestSupport

/// The Ansible collection's own checks, and the documents it relies on.
@Suite struct CollectionTests {
    static var collection: String { "\(Built.repository)contrib/ansible/ansible_collections/tupp/host" }

    /// The module utilities' unit tests (plain unittest: no Ansible needed to run them).
    @Test func moduleUtilsUnitTests() throws {
        guard try Host.require(tool("/usr/bin/python3")) else { return }
        let out = try Spawn.run(["/usr/bin/python3", "-m", "unittest", "ansible_collections.tupp.host.tests.unit.plugins.module_utils.test_tupp"],
                                stderrToStdout: true, environment: ["PYTHONPATH=\(Built.repository)contrib/ansible", "PYTHONDONTWRITEBYTECODE=1"])
        #expect(out.status == 0 && out.stdout.contains("\nOK"), "\(out)")
    }

    /// `ansible-test sanity` on a copy of the collection (it writes tests/output/ where it
    /// runs). Its virtual environments are the ones scripts/install-deps prepared.
    @Test func ansibleTestSanity() throws {
        guard try Host.require(tool("/usr/bin/ansible-test"), tool("/usr/bin/python3")) else { return }
        let directory = try TemporaryDirectory("tupp-sanity")
        defer { directory.remove() }
        let parent = "\(directory.path)/ansible_collections/tupp"
        try Files.createDirectory("\(directory.path)/ansible_collections")
        try Files.createDirectory(parent)
        #expect(try Spawn.run(["/bin/cp", "-r", Self.collection, "\(parent)/host"]).status == 0)
        let version = try Spawn.run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.trimmingCharacters()
        let out = try run(in: "\(parent)/host", ["/usr/bin/ansible-test", "sanity", "--python", version, "--color", "no"])
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout.contains("Running sanity test \"validate-modules\""), "\(out)")
    }

    /// Every example docs/fleet.md marks is one a test runs.
    @Test func everyFleetExampleIsRun() throws {
        let run: Set = ["site.yaml.j2", "rollout.yml", "inventory.yml", "galaxy-install", "check", "apply",
                        "sync.env", "allowed_signers", "sign", "install"]
        #expect(Set(try DocExamples("fleet.md").blocks.keys) == run)
    }
}

/// docs/plan-json.md lists every field of the plan JSON; tupp prints no other.
@Suite struct PlanJSONDocumentTests {
    /// The `| `field` |` rows of the Fields table.
    static func documentedFields() throws -> Set<String> {
        let text = try #require(try Files.readText("\(Built.repository)docs/plan-json.md"))
        var fields: Set<String> = []
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let name = line.dropFirst(3).prefix { $0 != "`" }
            if !name.contains(" ") && !name.hasPrefix("tupp ") { fields.insert(String(name)) }
        }
        return fields
    }

    /// Field paths as the table writes them: `summary.add`, `resource_changes[].reasons[].path`.
    /// Attribute maps and values are not descended into: their keys are attribute paths.
    static func fields(_ node: JSON.Node, prefix: String = "", into set: inout Set<String>) {
        switch node {
        case .object(let pairs):
            for (key, value) in pairs {
                let path = prefix.isEmpty ? key : "\(prefix).\(key)"
                set.insert(path)
                let opaque = ["resource_changes[].before", "resource_changes[].after", "resource_changes[].reasons[].before",
                              "resource_changes[].reasons[].after", "resource_drift[].recorded", "resource_drift[].observed"]
                if !opaque.contains(path) { fields(value, prefix: path, into: &set) }
            }
        case .array(let items):
            for item in items { fields(item, prefix: prefix + "[]", into: &set) }
        default:
            break
        }
    }

    @Test func everyFieldIsDocumented() throws {
        guard try Host.require(.root, .btrfs, .command("/bin/busybox")) else { return }
        let i = try Installation()
        defer { destroy(i, manifests: []) }
        func manifest(_ containers: String) -> String {
            """
            version: 1
            storage:
              root: {{ROOT}}/pool
              device: { file: {{ROOT}}/pool.img, size: 256MiB }
            images:
              box: { busybox: /bin/busybox }
              other: { busybox: /bin/busybox }
            networks:
              app: { bridge: {{BRIDGE}}, subnet: {{SUBNET}} }
            containers:
            \(containers)
            """
        }
        func container(_ name: String, image: String = "box", command: String = "sleep infinity & wait") -> String {
            """
              \(name):
                image: \(image)
                command: ["/bin/sh", "-c", "trap 'exit 0' TERM; \(command)"]
                stopTimeout: 2s
                network: { attach: app }

            """
        }
        let m = try i.manifest("m.yaml", manifest(["gone", "drifted", "killed", "replaced", "restarted"].map { container($0) }.joined()))
        let first = try i.tupp("apply", m)
        #expect(first.status == 0, "\(first)")
        // Every kind of change and reason at once.
        let drifted = try #require(try containerPID(i, "drifted"))
        #expect(try Spawn.run(["/usr/bin/nsenter", "-t", String(drifted.pid), "-u", "/bin/hostname", "hacked"]).status == 0)
        let killed = try #require(i.processes(of: "killed"))
        kill(killed.initProcess.pid, SIGKILL)
        // Its supervisor records the end, then exits (restart "no").
        #expect(eventually(seconds: 5) { !killed.supervisor.isAlive })
        try i.manifest("m.yaml", manifest(container("drifted") + container("killed") + container("replaced", image: "other")
                                          + container("restarted", command: "sleep 1000000 & wait") + container("added")))
        let plan = try i.tupp("plan", "--json", m)
        #expect(plan.status == 0, "\(plan)")
        var seen: Set<String> = []
        Self.fields(try JSON.parse(Array(plan.stdout.utf8)), into: &seen)
        let documented = try Self.documentedFields()
        #expect(seen.subtracting(documented).isEmpty, "printed but not in docs/plan-json.md: \(seen.subtracting(documented).sorted())")
        #expect(documented.subtracting(seen).isEmpty, "documented but not printed by this plan: \(documented.subtracting(seen).sorted())")
        for actions in ["[\"create\"]", "[\"update\"]", "[\"delete\"]", "[\"delete\",\"create\"]", "[\"no-op\"]"] {
            #expect(plan.stdout.contains("\"actions\":\(actions)"), "no \(actions) in \(plan.stdout)")
        }
        // The collection's notion of "changed" is the plan's: --detailed-exitcode agrees.
        #expect(plan.stdout.contains("\"changes\":true"))
        #expect(try i.tupp("plan", "--detailed-exitcode", m).status == 2)
        let unchangedAfterApply = try i.tupp("apply", m)
        #expect(unchangedAfterApply.status == 0, "\(unchangedAfterApply)")
        let converged = try i.tupp("plan", "--json", "--detailed-exitcode", m)
        #expect(converged.status == 0 && converged.stdout.contains("\"changes\":false"), "\(converged)")
    }
}

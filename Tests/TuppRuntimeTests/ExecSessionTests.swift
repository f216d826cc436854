import FoundationEssentials
import Glibc
import Testing
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// `exec` from an interactive terminal: the command must get nothing of the caller's
/// terminal, or a process in the container could type into the caller's shell (TIOCSTI).
/// Witnessed by a static probe (Tests/probes/session.c) run on a pty the test makes.
@Suite(.serialized)
struct ExecSessionTests {
    struct PtyRun: Decodable {
        var status: Int
        var output: String
        var pendingInput: String

        enum CodingKeys: String, CodingKey { case status, output, pendingInput = "pending_input" }
    }

    /// Runs `command` with a new pty as controlling terminal and stdio.
    static func underPty(_ command: [String]) throws -> PtyRun {
        let result = try Spawn.run(["/usr/bin/python3", "\(Built.repository)Tests/probes/under_pty.py"] + command)
        #expect(result.status == 0, "\(result)")
        return try JSONDecoder().decode(PtyRun.self, from: Data(result.stdout.utf8))
    }

    /// "pid=P sid=S tty_nr=T tiocsti=R" → its fields.
    static func fields(_ output: String) -> [String: String] {
        let line = output.split(whereSeparator: \.isNewline).first { $0.hasPrefix("pid=") } ?? ""
        var out: [String: String] = [:]
        for pair in line.split(separator: " ") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { out[String(kv[0])] = String(kv[1]) }
        }
        return out
    }

    @Test func execWithoutTTYGetsNoTerminalOfTheCaller() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath), .command("/usr/bin/python3"), .command("/usr/bin/gcc")) else { return }
        // The witness first: on this kernel, a process sharing the caller's terminal can
        // push input into it. Where it cannot (dev.tty.legacy_tiocsti=0), the check below
        // would hold whatever exec does, so the test is skipped (a failure under CI).
        let control = try Self.underPty([try Probe.path("session")])
        guard control.pendingInput == "echo INJECTED\n" else {
            #expect(Self.fields(control.output)["tiocsti"] != "ok", "TIOCSTI reported success but nothing arrived")
            try Host.unavailable("needs TIOCSTI (dev.tty.legacy_tiocsti=1): without it no test can tell whether exec shares the caller's terminal")
        }

        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("session", into: fixture.root)
        _ = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)

        let plain = try Self.underPty(fixture.runtime.execCommand(directory: fixture.directory, command: ["session"]))
        let inside = Self.fields(plain.output)
        #expect(plain.status == 0, "\(plain.output)")
        #expect(inside["tiocsti"] != nil && inside["tiocsti"] != "ok", "\(plain.output)")
        #expect(plain.pendingInput.isEmpty, "the container typed into the caller's terminal: \(plain.pendingInput)")
        #expect(inside["tty_nr"] == "0", "no controlling terminal: \(plain.output)")
        #expect(inside["sid"] != nil && inside["sid"] == inside["pid"], "a session of its own: \(plain.output)")

        // Output still reaches the caller (relayed through a pipe), and input too.
        let echoed = try Self.underPty(fixture.runtime.execCommand(directory: fixture.directory, command: ["echo", "relayed"]))
        #expect(echoed.status == 0 && echoed.output.contains("relayed"), "\(echoed.output)")
    }

    @Test func execWithTTYGetsTheContainersOwnTerminal() throws {
        guard try Host.require(.root, .command(ContainerFixture.busyboxPath), .command("/usr/bin/python3"), .command("/usr/bin/gcc")) else { return }
        let fixture = try ContainerFixture()
        defer { fixture.cleanup() }
        try Probe.install("session", into: fixture.root)
        _ = try fixture.runtime.start(try fixture.config(), directory: fixture.directory)

        let run = try Self.underPty(fixture.runtime.execCommand(directory: fixture.directory, command: ["session"], tty: true))
        let inside = Self.fields(run.output)
        #expect(run.status == 0, "\(run.output)")
        // A controlling terminal, the container's own pty: pushing input into it stays inside.
        #expect(inside["tty_nr"] != nil && inside["tty_nr"] != "0", "\(run.output)")
        #expect(inside["sid"] != nil && inside["sid"] == inside["pid"], "\(run.output)")
        #expect(run.pendingInput.isEmpty, "the container typed into the caller's terminal: \(run.pendingInput)")
    }
}

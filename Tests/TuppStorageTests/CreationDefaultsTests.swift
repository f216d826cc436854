import Glibc
import Testing
import TuppManifest
@testable import TuppStorage
import TuppSystem
import TuppTestSupport
import TuppTestTools

/// Import skips fchown and fchmod where creation already gives an entry its owner and
/// mode. The judgement is pure; the imports below check, with stat(2), that every entry
/// still ends up exactly as the archive says — also where creation does not give it that:
/// under a setgid directory and under a default ACL.
@Suite("Import: owner and mode from creation")
struct CreationDefaultsTests {
    let root = CreationDefaults(uid: 0, gid: 0, umask: 0o022)

    @Test func creationModeOnlyWhereCreationGivesExactlyThatMode() {
        #expect(root.creationMode(for: 0o644) == 0o644)
        #expect(root.creationMode(for: 0o755) == 0o755)
        #expect(root.creationMode(for: 0o700) == 0o700)
        #expect(root.creationMode(for: 0o000) == 0o000)
        #expect(root.creationMode(for: 0o664) == nil, "the umask drops group write")
        #expect(root.creationMode(for: 0o666) == nil)
        #expect(root.creationMode(for: 0o4755) == nil, "setuid is set after chown")
        #expect(root.creationMode(for: 0o2755) == nil)
        #expect(root.creationMode(for: 0o1777) == nil)
        #expect(CreationDefaults(uid: 0, gid: 0, umask: nil).creationMode(for: 0o644) == nil, "unknown umask")
        #expect(CreationDefaults(uid: 0, gid: 0, umask: 0).creationMode(for: 0o666) == 0o666)
    }

    @Test func ownerIsSetOnlyForTheCreator() {
        #expect(root.ownerIsSet(uid: 0, gid: 0))
        #expect(!root.ownerIsSet(uid: 0, gid: 42))
        #expect(!root.ownerIsSet(uid: 1000, gid: 0))
        #expect(CreationDefaults(uid: 1000, gid: 1000, umask: 0o022).ownerIsSet(uid: 1000, gid: 1000))
    }

    @Test func umaskIsReadFromProcStatus() {
        let status = Array("Name:\ttupp\nUmask:\t0027\nState:\tR (running)\n".utf8)
        #expect(CreationDefaults.umask(inStatus: status[...]) == 0o027)
        #expect(CreationDefaults.umask(inStatus: Array("Name:\tx\nUmask:\t0000\n".utf8)[...]) == 0)
        #expect(CreationDefaults.umask(inStatus: Array("Name:\tx\nState:\tR\n".utf8)[...]) == nil, "kernels before 4.7")
        #expect(CreationDefaults.umask(inStatus: Array("Name:\tx\nUmask:\t08\n".utf8)[...]) == nil)
    }

    @Test func thisProcessesUmaskIsWhatAChildShellReports() throws {
        // A child inherits the umask; the shell's `umask` prints it in octal.
        let shell = try command(["/bin/sh", "-c", "umask"]).output.trimmingCharacters()
        #expect(CreationDefaults.readUmask() == mode_t(shell, radix: 8))
    }

    /// Plain entries first (creation trusted), then a setgid directory: what is created
    /// below it inherits its group and a new directory its setgid bit unless fchown and
    /// fchmod run.
    @Test func entriesUnderASetgidDirectoryGetTheArchivesOwnerAndMode() async throws {
        try await withPool { pool in
            let tar = "\(pool.directory.path)/setgid.tar"
            try makeTar(tar, """
            add(tf, "plain", b"x", mode=0o644)
            add(tf, "wide", b"x", mode=0o666)
            add(tf, "owned", b"x", mode=0o600, uid=7, gid=8)
            dir(tf, "d", mode=0o755)
            dir(tf, "twice", mtime=1600000000)
            add(tf, "twice/x", b"1")
            dir(tf, "twice", mtime=1650000000)
            dir(tf, "shared", mode=0o2775, gid=42)
            add(tf, "shared/f", b"x", mode=0o644)
            dir(tf, "shared/sub", mode=0o755)
            sym(tf, "shared/link", "f")
            """)
            _ = try await pool.store.importImage(name: "setgid", from: .tar(path: tar))
            let image = "\(pool.root)/images/setgid"
            func st(_ path: String) throws -> stat { try #require(try Files.status("\(image)/\(path)")) }
            func lst(_ path: String) throws -> stat {
                var s = stat()
                try #require(lstat("\(image)/\(path)", &s) == 0)
                return s
            }
            #expect(try st("plain").st_mode & 0o7777 == 0o644 && st("plain").st_uid == 0 && st("plain").st_gid == 0)
            #expect(try st("wide").st_mode & 0o7777 == 0o666, "bits the umask drops are set by chmod")
            #expect(try st("owned").st_uid == 7 && st("owned").st_gid == 8 && st("owned").st_mode & 0o7777 == 0o600)
            #expect(try st("d").st_mode & 0o7777 == 0o755)
            #expect(try st("twice").st_mtim.tv_sec == 1_650_000_000, "a directory listed twice takes its last times")
            #expect(try st("shared").st_mode & 0o7777 == 0o2775 && st("shared").st_gid == 42)
            #expect(try st("shared/f").st_gid == 0, "not the setgid directory's group")
            #expect(try st("shared/f").st_mode & 0o7777 == 0o644)
            #expect(try st("shared/sub").st_gid == 0 && st("shared/sub").st_mode & 0o7777 == 0o755, "not setgid by inheritance")
            #expect(try lst("shared/link").st_gid == 0)
        }
    }

    /// A default ACL makes new entries take their mode from the ACL instead of the umask:
    /// a file created 0644 below this one would be 0640 without its chmod.
    @Test func entriesUnderADefaultACLGetTheArchivesMode() async throws {
        try await withPool { pool in
            let tar = "\(pool.directory.path)/acl.tar"
            // posix_acl_xattr v2: user::rwx, group::r-x, other::--- (ids unused for these tags).
            let acl = "\\x02\\x00\\x00\\x00\\x01\\x00\\x07\\x00\\x00\\x00\\x00\\x00\\x04\\x00\\x05\\x00\\x00\\x00\\x00\\x00\\x20\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
            try makeTar(tar, """
            add(tf, "plain", b"x", mode=0o644)
            ti = info("acl", type=tarfile.DIRTYPE, mode=0o755)
            ti.pax_headers = {"SCHILY.xattr.system.posix_acl_default": "\(acl)"}
            tf.addfile(ti)
            add(tf, "acl/f", b"x", mode=0o644)
            dir(tf, "acl/sub", mode=0o755)
            """)
            _ = try await pool.store.importImage(name: "acl", from: .tar(path: tar))
            let image = "\(pool.root)/images/acl"
            func st(_ path: String) throws -> stat { try #require(try Files.status("\(image)/\(path)")) }
            #expect(xattr("\(image)/acl", "system.posix_acl_default") != nil, "the default ACL was written")
            #expect(try st("plain").st_mode & 0o7777 == 0o644)
            #expect(try st("acl/f").st_mode & 0o7777 == 0o644, "not 0640 from the default ACL")
            #expect(try st("acl/sub").st_mode & 0o7777 == 0o755, "not 0750 from the default ACL")
        }
    }
}

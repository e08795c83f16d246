import ChildProcess
import Foundation

/// Where a store's password or key file comes from, in this order: a key file (`--key-file`), a
/// password file (`--password-file`, a job's `password_file`, or `SHADOWMOVER_PASSWORD_FILE`), `SHADOWMOVER_PASSWORD`, a password
/// command (`SHADOWMOVER_PASSWORD_COMMAND`, or a job's `password_command`), and last a prompt on the
/// terminal, never echoed. Job files name a file or a command, never the password itself.
public struct SecretSource: Sendable {
    /// `--key-file`: a key file instead of a password.
    public var keyFile: String?
    /// `--password-file` or a job's `password_file`.
    public var passwordFile: String?
    /// A job's `password_command`.
    public var passwordCommand: String?
    /// An empty password is refused unless this is set (`--insecure-empty-password`).
    public var allowEmptyPassword = false
    /// The environment consulted (the process's by default).
    public var environment: [String: String]

    /// A source with the given file, key file or command, consulting `environment` after them.
    public init(
        keyFile: String? = nil, passwordFile: String? = nil, passwordCommand: String? = nil, allowEmptyPassword: Bool = false,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.keyFile = keyFile
        self.passwordFile = passwordFile
        self.passwordCommand = passwordCommand
        self.allowEmptyPassword = allowEmptyPassword
        self.environment = environment
    }

    /// A password given directly (library callers and tests).
    public static func password(_ text: String) -> SecretSource {
        SecretSource(environment: ["SHADOWMOVER_PASSWORD": text])
    }

    /// True when something other than the terminal prompt names a secret.
    public var isGiven: Bool {
        keyFile != nil || passwordFile != nil || passwordCommand != nil || environment["SHADOWMOVER_PASSWORD"] != nil
            || environment["SHADOWMOVER_PASSWORD_FILE"] != nil
            || environment["SHADOWMOVER_PASSWORD_COMMAND"] != nil
    }

    /// The secret for the store at `store`. `confirm` (a new password) asks twice at a prompt.
    public func secret(store: String, confirm: Bool = false) throws -> StoreSecret {
        if let keyFile { return .keyFile(path: keyFile) }
        let password: [UInt8]
        if let passwordFile = passwordFile ?? environment["SHADOWMOVER_PASSWORD_FILE"] {
            password = try Self.readPasswordFile(passwordFile)
        } else if let text = environment["SHADOWMOVER_PASSWORD"] {
            password = Array(text.utf8)
        } else if let command = passwordCommand ?? environment["SHADOWMOVER_PASSWORD_COMMAND"] {
            password = try Self.runPasswordCommand(command)
        } else if let typed = try Self.prompt("password for the store at \(store): ") {
            if confirm {
                guard let again = try Self.prompt("the same password again: "), again == typed else {
                    throw KeyError.passwordsDiffer
                }
            }
            password = typed
        } else {
            throw KeyError.noSecret(store: store)
        }
        guard !password.isEmpty || allowEmptyPassword else { throw KeyError.emptyPassword }
        return .password(password)
    }

    /// A password file's first line (a trailing newline is not part of the password).
    static func readPasswordFile(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KeyError.passwordFile(path: path, reason: FileManager.default.fileExists(atPath: path) ? "permission denied" : "it does not exist")
        }
        guard data.count <= 64 << 10 else { throw KeyError.passwordFile(path: path, reason: "it is longer than 64 KiB: is it the right file?") }
        return firstLine(Array(data))
    }

    /// Runs `command` with /bin/sh; its standard output's first line is the password. A command that
    /// fails or prints nothing is an error, not an empty password.
    static func runPasswordCommand(_ command: String) throws -> [UInt8] {
        let result: (status: Int32, output: [UInt8])
        do { result = try ChildProcess.output(of: ["/bin/sh", "-c", command], limit: 64 << 10) } catch {
            throw KeyError.passwordCommand(command: command, reason: "could not start: \(error)")
        }
        guard result.status == 0 else {
            throw KeyError.passwordCommand(command: command, reason: "failed (exit status \(result.status)); no password was read")
        }
        let line = firstLine(result.output)
        guard !line.isEmpty else {
            throw KeyError.passwordCommand(command: command, reason: "printed nothing: it must print the password on its standard output")
        }
        return line
    }

    private static func firstLine(_ bytes: [UInt8]) -> [UInt8] {
        var line = Array(bytes.prefix { $0 != UInt8(ascii: "\n") })
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        return line
    }

    /// Asks on the controlling terminal with echo off. - Returns: nil when there is no terminal.
    static func prompt(_ text: String) throws -> [UInt8]? {
        guard isatty(STDIN_FILENO) == 1 else { return nil }
        let fd = open("/dev/tty", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else { return nil }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(fd, TCSAFLUSH, &quiet)
        defer {
            tcsetattr(fd, TCSAFLUSH, &saved)
            _ = write(fd, "\n", 1)
        }
        _ = text.withCString { write(fd, $0, strlen($0)) }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while read(fd, &byte, 1) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        return line
    }
}

/// Errors of a shadow copy session, each naming what failed and what to do.
public enum ShadowCopyError: Error, CustomStringConvertible {
    case mounts(String)
    case pathMissing(String)
    case setInProgress(pid: Int32)
    case volumeMarked(Volume, pid: Int32)
    case tooManyVolumes(Int)
    case duplicateVolume(Volume)
    case unsupported(Volume, String)
    case readOnly(Volume, String)
    case writerFailed(writer: String, event: WriterEvent, WriterError, attempts: Int)
    case commitTimeout(Volume, limit: Duration)
    case freezeTimeout(writer: String, limit: Duration)
    case provider(Volume, String)
    case lock(String)
    case noSuchShadow(String)
    case selection(String)

    /// What failed, the writer or volume, and what to do.
    public var description: String {
        switch self {
        case .mounts(let m): "cannot resolve volumes: \(m)"
        case .pathMissing(let p): "\(p) does not exist: check the path"
        case .setInProgress(let pid):
            "a shadow copy set is already being created by pid \(pid): wait for it, or pass --wait[=SECONDS]"
        case .volumeMarked(let v, let pid):
            "volume \(v.mountPoint) is already being shadowed by pid \(pid): wait for that backup to finish"
        case .tooManyVolumes(let n): "a shadow copy set holds at most 64 volumes; these paths span \(n): split the backup"
        case .duplicateVolume(let v): "volume \(v.mountPoint) is already in the shadow copy set: list each volume once"
        case .unsupported(let v, let why): "volume \(v) cannot be shadowed: \(why)"
        case .readOnly(let v, let provider):
            "volume \(v.mountPoint) is mounted read-only, so the \(provider) provider cannot create its shadow copy there: a read-only volume does not change, back it up with --no-shadow-copy or let the provider be chosen automatically"
        case .writerFailed(let w, let event, let e, let attempts):
            "writer \(w) failed at \(event.rawValue) (\(e.failure))\(attempts > 1 ? " after \(attempts) attempts" : ""): \(e.message)"
        case .commitTimeout(let v, let limit):
            "the shadow copy of \(v.mountPoint) took longer than the \(limit) commit limit; writers were thawed and the partial shadow copy deleted"
        case .freezeTimeout(let w, let limit):
            "writer \(w) was held longer than its \(limit) freeze limit; every writer was thawed and the partial shadow copy deleted"
        case .provider(let v, let m): "shadow copy of \(v.mountPoint) failed: \(m)"
        case .lock(let m): m
        case .noSuchShadow(let id): "no shadow copy \(id): list them with `shadowmover shadows list`"
        case .selection(let m): m
        }
    }
}

import Foundation

/// Expands file descriptors (directory + filespec with `*`/`?` + recursive) into existing paths.
enum ComponentFiles {
    static func expand(_ descriptor: FileDescriptor, excluding excludes: [FileDescriptor]) -> [String] {
        var out: [String] = []
        func visit(_ directory: String) {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
            for name in names.sorted() {
                let full = directory == "/" ? "/" + name : directory + "/" + name
                var st = stat()
                guard lstat(full, &st) == 0 else { continue }
                let isDir = st.st_mode & S_IFMT == S_IFDIR
                if matches(descriptor.filespec, name) && !isExcluded(full, excludes) { out.append(full) }
                if isDir && descriptor.recursive && name != ".shadowmover-shadows" { visit(full) }
            }
        }
        visit(descriptor.path)
        return out
    }

    static func isExcluded(_ path: String, _ excludes: [FileDescriptor]) -> Bool {
        for e in excludes {
            let directory = (path as NSString).deletingLastPathComponent
            let name = (path as NSString).lastPathComponent
            let inside = e.recursive ? (directory == e.path || directory.hasPrefix(e.path + "/")) : directory == e.path
            if inside && matches(e.filespec, name) { return true }
        }
        return false
    }

    static func matches(_ pattern: String, _ name: String) -> Bool {
        fnmatch(pattern, name, 0) == 0
    }
}

#!/usr/bin/env bash
# Installs shell completions for a shadowmover binary (bash, zsh and fish), system-wide as root, else
# for this user:   tools/install-completions.sh [BINARY]   (default: .build/release/shadowmover)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-$PWD/.build/release/shadowmover}"
if [ "$(id -u)" -eq 0 ]; then
    BASH_DIR=/usr/share/bash-completion/completions
    ZSH_DIR=/usr/local/share/zsh/site-functions
    FISH_DIR=/usr/share/fish/vendor_completions.d
else
    BASH_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions"
    ZSH_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/zsh/site-functions"
    FISH_DIR="${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions"
fi
mkdir -p "$BASH_DIR" "$ZSH_DIR" "$FISH_DIR"
"$BIN" --generate-completion-script bash > "$BASH_DIR/shadowmover"
"$BIN" --generate-completion-script zsh > "$ZSH_DIR/_shadowmover"
"$BIN" --generate-completion-script fish > "$FISH_DIR/shadowmover.fish"
echo "shell completions: $BASH_DIR/shadowmover, $ZSH_DIR/_shadowmover, $FISH_DIR/shadowmover.fish (new shells pick them up)"

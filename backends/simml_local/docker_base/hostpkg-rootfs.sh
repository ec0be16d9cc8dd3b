#!/usr/bin/env bash
# hostpkg-rootfs.sh OUT.tar PKG... -- tar up the files of the HOST's installed Debian packages
# PKG... plus their recursive Depends/Pre-Depends (no download), for simml's Docker base image
# (`simml docker build-base --method hostpkg`). Tested recipe: docs/docker.md.
set -euo pipefail
out=$1; shift
installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
declare -A seen
queue=("$@")
while ((${#queue[@]})); do
  p=${queue[0]%%:*}; queue=("${queue[@]:1}")
  [[ -n ${seen[$p]:-} ]] && continue
  if ! installed "$p"; then   # virtual package: take an installed provider
    prov=$(dpkg-query -W -f '${Package} ${Provides}\n' | awk -v v="$p" \
      '{for(i=2;i<=NF;i++){g=$i; sub(/[,(].*/,"",g); if(g==v){print $1; exit}}}')
    [[ -n $prov ]] && queue+=("$prov")
    seen[$p]=virtual; continue
  fi
  seen[$p]=1
  while IFS= read -r alt; do
    alt=$(sed 's/([^)]*)//g' <<<"$alt"); [[ -z ${alt// } ]] && continue
    IFS='|' read -ra opts <<<"$alt"; chosen=""
    for o in "${opts[@]}"; do o=$(echo $o); o=${o%%:*}; if installed "$o"; then chosen=$o; break; fi; done
    [[ -z $chosen ]] && { chosen=$(echo ${opts[0]}); chosen=${chosen%%:*}; }
    queue+=("$chosen")
  done < <(dpkg-query -W -f '${Pre-Depends}, ${Depends}\n' "$p" | tr ',' '\n')
done
pkgs=(); for k in "${!seen[@]}"; do [[ ${seen[$k]} == 1 ]] && pkgs+=("$k"); done
echo "hostpkg-rootfs: ${#pkgs[@]} packages: ${pkgs[*]}" >&2
list=$(mktemp)
{ for p in "${pkgs[@]}"; do dpkg -L "$p"; done
  printf '%s\n' /bin /sbin /lib /lib64 /etc/passwd /etc/group /etc/ssl/certs/ca-certificates.crt; } |
python3 -c '
import os, sys
out = set()
for f in sys.stdin.read().split("\n"):
    if not f or not os.path.lexists(f): continue
    if os.path.isdir(f) and not os.path.islink(f): continue
    # dpkg lists /bin/x but /bin is a merged-/usr symlink: store the real path
    out.add(os.path.join(os.path.realpath(os.path.dirname(f)), os.path.basename(f)).lstrip("/"))
print("\n".join(sorted(out)))' >"$list"
tar -C / --no-recursion -cf "$out" -T "$list"
rm -f "$list"

# bash completion for ferryctl(8): options, commands, and the listener,
# backend and server names of the running ferryd (read from its metrics
# through the same control socket the command line names).

_ferryctl_names() { # kind: listener | server | backend
    local -a sock=()
    local i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -s | --socket | -c) sock=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}") ;;
        esac
    done
    local metrics
    metrics=$(ferryctl "${sock[@]}" metrics 2>/dev/null) || return
    case $1 in
        listener) sed -n 's/.*listener="\([^"]*\)".*/\1/p' <<<"$metrics" | sort -u ;;
        backend) sed -n 's/.*backend="\([^"]*\)".*/\1/p' <<<"$metrics" | sort -u ;;
        server) sed -n 's/.*backend="\([^"]*\)",server="\([^"]*\)".*/\1\/\2/p' <<<"$metrics" | sort -u ;;
    esac
}

_ferryctl() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion -n / || return
    else
        cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
    fi

    case $prev in
        -s | --socket | -c)
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
    esac

    # The command is the first word that is neither an option nor its argument.
    local i cmd= argn=0
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -s | --socket | -c) ((i++)) ;;
            -*) ;;
            *) if [ -z "$cmd" ]; then cmd=${words[i]}; else ((argn++)); fi ;;
        esac
    done

    if [ -z "$cmd" ]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W '-s --socket -c -j --json -V --version -h --help' -- "$cur"))
        else
            COMPREPLY=($(compgen -W 'info stats conns metrics reload upgrade help acme
                disable enable set add del disable-listener enable-listener shutdown' -- "$cur"))
        fi
        return
    fi

    case $cmd in
        disable | enable | del)
            ((argn == 0)) && COMPREPLY=($(compgen -W "$(_ferryctl_names server)" -- "$cur")) ;;
        disable-listener | enable-listener)
            ((argn == 0)) && COMPREPLY=($(compgen -W "$(_ferryctl_names listener)" -- "$cur")) ;;
        add)
            ((argn == 0)) && COMPREPLY=($(compgen -W "$(_ferryctl_names backend)" -- "$cur"))
            ((argn >= 3)) && COMPREPLY=($(compgen -W 'weight= backup max_connections=' -- "$cur")) ;;
        set)
            case $argn in
                0) COMPREPLY=($(compgen -W "$(_ferryctl_names server)" -- "$cur")) ;;
                1) COMPREPLY=($(compgen -W 'state weight addr' -- "$cur")) ;;
                2) [ "$prev" = state ] && COMPREPLY=($(compgen -W 'ready drain maint' -- "$cur")) ;;
            esac ;;
    esac
}
complete -F _ferryctl ferryctl

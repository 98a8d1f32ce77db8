#include "completion.hpp"

#include <ostream>
#include <stdexcept>
#include <string_view>

namespace drover::cli {
namespace {

/// `s` as one bash word, quoted: the names come from drover's own tree, but the script must
/// stay valid whatever they hold.
std::string quoted(std::string_view s) {
    std::string q = "'";
    for (char c : s) {
        if (c == '\'')
            q += "'\\''";
        else
            q += c;
    }
    return q + "'";
}

std::string joined(const std::vector<std::string>& words) {
    std::string out;
    for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
    return out;
}

/// The tables the script looks things up in, keyed by the command's path from the program on
/// ("drover", "drover ctl status": bash refuses an empty key).
struct bash_tables {
    std::string commands, options, valued, choices, positionals, rest;
};

void add_command(const command_info& c, const std::string& path, bash_tables& t) {
    std::vector<std::string> subs, opts;
    for (const auto& s : c.subcommands) subs.push_back(s.name);
    if (!subs.empty()) t.commands += "    [" + quoted(path) + "]=" + quoted(joined(subs)) + "\n";
    for (const auto& o : c.options) {
        for (const auto& n : o.names) {
            opts.push_back(n);
            if (!o.takes_value) continue;
            t.valued += "    [" + quoted(path + "|" + n) + "]=1\n";
            if (!o.choices.empty())
                t.choices += "    [" + quoted(path + "|" + n) + "]=" + quoted(joined(o.choices)) + "\n";
        }
    }
    t.options += "    [" + quoted(path) + "]=" + quoted(joined(opts)) + "\n";
    for (std::size_t i = 0; i < c.positionals.size(); ++i) {
        const auto& p = c.positionals[i];
        if (p.names.empty()) continue;
        t.positionals +=
            "    [" + quoted(path + "|" + std::to_string(i)) + "]=" + quoted(p.names.front()) + "\n";
        if (!p.choices.empty())
            t.choices +=
                "    [" + quoted(path + "|" + p.names.front()) + "]=" + quoted(joined(p.choices)) + "\n";
    }
    if (c.rest_is_command) t.rest += "    [" + quoted(path) + "]=1\n";
    for (const auto& s : c.subcommands) add_command(s, path + " " + s.name, t);
}

// The fixed part of the script. Bash 4.2 or later (associative arrays declared with -g, so that
// the script also works when bash-completion's loader sources it from inside a function).
constexpr std::string_view bash_functions = R"BASH(
# The services of the config given with -f, else of ./drover.toml, else of ./Procfile: the
# [service.NAME] tables of a drover.toml, the process types of a Procfile. Read with bash alone,
# quickly, without running drover (the file may be broken while it is being edited).
_drover_services() {
    local file=$1 line name
    local -A seen=()
    if [[ -z $file ]]; then
        if [[ -f drover.toml ]]; then
            file=drover.toml
        elif [[ -f Procfile ]]; then
            file=Procfile
        else
            return 0
        fi
    fi
    [[ $file == "~/"* ]] && file=$HOME/${file#"~/"}
    [[ -f $file && -r $file ]] || return 0
    local procfile='^([A-Za-z0-9_-]+):'
    local bare='^[[:space:]]*\[[[:space:]]*service[[:space:]]*\.[[:space:]]*([A-Za-z0-9_-]+)[[:space:]]*[].]'
    local quoted='^[[:space:]]*\[[[:space:]]*service[[:space:]]*\.[[:space:]]*"([A-Za-z0-9_.-]+)"[[:space:]]*[].]'
    while IFS= read -r line || [[ -n $line ]]; do
        name=
        if [[ ${file##*/} == Procfile* ]]; then
            [[ $line =~ $procfile ]] && name=${BASH_REMATCH[1]}
        elif [[ $line =~ $bare || $line =~ $quoted ]]; then
            name=${BASH_REMATCH[1]}
        fi
        if [[ -n $name && -z ${seen[$name]} ]]; then
            seen[$name]=1
            printf '%s\n' "$name"
        fi
    done <"$file"
}

# A command line of its own from word $1 on (drover run's PROGRAM and its arguments).
_drover_command_line() {
    if declare -F _command_offset >/dev/null; then
        _command_offset "$1" # bash-completion: the program's own completion
    elif (($1 == COMP_CWORD)); then
        mapfile -t COMPREPLY < <(compgen -c -- "${COMP_WORDS[COMP_CWORD]}")
    else
        compopt -o default 2>/dev/null
        COMPREPLY=()
    fi
}

_drover() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev= path=drover file= pos=0 i w key
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()
    # The command path so far, skipping options and their values; -f FILE of up and ctl names
    # the config whose services to offer.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ -n ${_drover_rest[$path]} && $w == -- ]]; then
            _drover_command_line $((i + 1))
            return 0
        elif [[ $w == -* ]]; then
            [[ $w == *=* ]] && continue
            if [[ -n ${_drover_valued["$path|$w"]} ]]; then
                if [[ ($path == "drover up" || $path == "drover ctl"*) && ($w == -f || $w == --file) ]]; then
                    file=${COMP_WORDS[i + 1]}
                    [[ $file == = ]] && file=${COMP_WORDS[i + 2]}
                fi
                # --opt=value arrives as three words: --opt, =, value
                if [[ ${COMP_WORDS[i + 1]} == = ]]; then ((i += 2)); else ((i++)); fi
            fi
        elif [[ -n ${_drover_rest[$path]} ]]; then
            _drover_command_line "$i"
            return 0
        else
            key="$path $w"
            if ((pos == 0)) && [[ -n ${_drover_options[$key]+set} ]]; then
                path=$key
            else
                ((pos++))
            fi
        fi
    done

    # The value of an option: its list, else file names.
    local opt=
    if [[ $cur == = && $prev == -* ]]; then
        opt=$prev
        cur=
    elif [[ $prev == = ]] && ((COMP_CWORD > 1)) && [[ ${COMP_WORDS[COMP_CWORD - 2]} == -* ]]; then
        opt=${COMP_WORDS[COMP_CWORD - 2]}
    elif [[ $prev == -* ]]; then
        opt=$prev
    fi
    if [[ -n $opt && -n ${_drover_valued["$path|$opt"]} ]]; then
        if [[ -n ${_drover_choices["$path|$opt"]} ]]; then
            mapfile -t COMPREPLY < <(compgen -W "${_drover_choices["$path|$opt"]}" -- "$cur")
        else
            compopt -o default 2>/dev/null
        fi
        return 0
    fi

    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${_drover_options[$path]}" -- "$cur")
    elif [[ -n ${_drover_rest[$path]} ]]; then
        _drover_command_line "$COMP_CWORD"
    elif ((pos == 0)) && [[ -n ${_drover_commands[$path]} ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${_drover_commands[$path]}" -- "$cur")
    else
        local name=${_drover_positionals["$path|$pos"]}
        if [[ -z $name ]]; then # past the last: a list repeats its kind
            for ((i = pos; i >= 0; i--)); do
                name=${_drover_positionals["$path|$i"]}
                [[ -n $name ]] && break
            done
        fi
        if [[ -n ${_drover_choices["$path|$name"]} ]]; then
            mapfile -t COMPREPLY < <(compgen -W "${_drover_choices["$path|$name"]}" -- "$cur")
        elif [[ $name == SERVICE ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$(_drover_services "$file")" -- "$cur")
        fi
    fi
    return 0
}

complete -F _drover drover
)BASH";

void write_bash(std::ostream& out, const command_info& root) {
    bash_tables t;
    add_command(root, root.name, t);
    out << "# bash completion for " << root.name << ", written by `" << root.name
        << " completion bash` from the program's own\n"
           "# commands and options. Load it in a running shell with\n"
           "#     source <("
        << root.name
        << " completion bash)\n"
           "# or save it as ~/.local/share/bash-completion/completions/"
        << root.name << " (bash-completion loads it on demand).\n\n";
    out << "# The subcommands of each command, by its path from the program on.\n"
        << "declare -gA _drover_commands=(\n"
        << t.commands << ")\n"
        << "# The options of each command.\n"
        << "declare -gA _drover_options=(\n"
        << t.options << ")\n"
        << "# The options that take a value, as \"PATH|OPTION\".\n"
        << "declare -gA _drover_valued=(\n"
        << t.valued << ")\n"
        << "# The only values of an option or positional argument, as \"PATH|OPTION\" or \"PATH|NAME\".\n"
        << "declare -gA _drover_choices=(\n"
        << t.choices << ")\n"
        << "# The positional arguments of each command, as \"PATH|INDEX\".\n"
        << "declare -gA _drover_positionals=(\n"
        << t.positionals << ")\n"
        << "# The commands whose first other word starts a command line of its own.\n"
        << "declare -gA _drover_rest=(\n"
        << t.rest << ")\n"
        << bash_functions;
}

} // namespace

void write_completion(std::ostream& out, const std::string& shell, const command_info& root) {
    if (shell == "bash") return write_bash(out, root);
    throw std::invalid_argument("no completion script for the shell '" + shell + "'");
}

} // namespace drover::cli

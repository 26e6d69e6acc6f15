"""The stages as the running bot runs them, given its `bot.context.Services`: the poll, the
dispatcher's shell and what each message says, the publish ping and WebSub.

Imports point one way: bot.pipeline (parts that know nothing of the running bot) ←
bot.context (builds Services from them) ← bot.stages ← commands, web, app, runner.
"""

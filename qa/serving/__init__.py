"""`qa serve`: the ASGI app (server), its HTTP API (openai_api, api_chats), the Gradio chat UI (ui and its
panels, assets, lazy mount), logins (users) and the one background writer of uploads (writer)."""

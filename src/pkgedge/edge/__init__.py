"""The request pipeline: phases, fills (the fetch side) and delivery."""
